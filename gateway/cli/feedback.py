"""``hhh feedback ...``: the human-feedback side of the command line (sync with Label Studio)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.common import configure_logging, settings_for
from gateway.cli.evaluate_reward import add_evaluate_reward_command
from gateway.settings import ConfigError, Settings

if TYPE_CHECKING:
    from feedback.labelstudio.sync import LabelStudioSync

log = logging.getLogger("hhh.feedback")
PROGRESS_HELP = "show progress bars even when not on a terminal"


class TqdmProgress:
    """The sync's progress, as one tqdm bar a stage, on stderr (silent when stderr is not a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None

    def start(self, stage: str, total: int | None) -> None:
        from tqdm import tqdm

        self.finish()
        self._bar = tqdm(total=total, desc=stage, unit="item", disable=not self.enabled, leave=True)

    def advance(self, amount: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(amount)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@asynccontextmanager
async def redis_for(settings: Settings, directory: Path) -> AsyncIterator[Any]:
    """The configured Redis; else the one a running gateway embedded; else an embedded one of our own."""
    from feedback.embedded_redis import EmbeddedRedis, running_embedded_redis
    from feedback.redis_connection import BATCH_CONNECT_TIMEOUT_S, BATCH_TIMEOUT_S, redis_client

    async with AsyncExitStack() as stack:
        url = settings.redis.url
        if url is None:
            url = await running_embedded_redis(directory)
        if url is None:
            url = (await stack.enter_async_context(EmbeddedRedis(directory))).url
        client = redis_client(url, timeout_s=BATCH_TIMEOUT_S, connect_timeout_s=BATCH_CONNECT_TIMEOUT_S)
        stack.push_async_callback(client.aclose)
        await client.ping()
        yield client


def _serve_metrics(port: int, host: str) -> Any:
    """The standalone worker's Prometheus endpoint (the gateway serves its own at /metrics). Loopback unless
    told otherwise: in a container or a pod, Prometheus scrapes it from outside (``--metrics-host``)."""
    from prometheus_client import CollectorRegistry, start_http_server

    from feedback.labelstudio.metrics import SyncMetrics

    registry = CollectorRegistry()
    metrics = SyncMetrics(registry)
    start_http_server(port, addr=host, registry=registry)
    print(f"metrics on http://{host}:{port}/metrics", file=sys.stderr)
    return metrics


async def _watch(sync: LabelStudioSync, metrics_port: int | None, metrics_host: str) -> None:
    """Rounds until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if metrics_port is None:
        await sync.watch(stop)
    else:
        metrics = _serve_metrics(metrics_port, metrics_host)
        await sync.watch(stop, on_round=metrics.observe, on_failure=metrics.rounds_failed.inc)


async def _sync(
    settings: Settings,
    redis_dir: Path,
    watch: bool,
    flush: bool,
    show_progress: bool,
    metrics_port: int | None,
    metrics_host: str = "127.0.0.1",
) -> int:
    from feedback.labelstudio.client import LabelStudioProject
    from feedback.labelstudio.errors import LabelStudioRefused, LabelStudioUnavailable
    from feedback.labelstudio.sync import SyncBusy
    from feedback.labelstudio.wiring import build_sync

    ls_settings = settings.feedback.labelstudio
    async with redis_for(settings, redis_dir) as client, LabelStudioProject(ls_settings) as api:
        progress = TqdmProgress(show_progress and not watch)
        wired = build_sync(ls_settings, api, client, settings.redis.stream, progress)
        sync, lock, store = wired.sync, wired.lock, wired.sync.store
        try:
            await lock.acquire()
        except SyncBusy as exc:
            print(f"hhh: {exc}", file=sys.stderr)
            return 1
        try:
            project = await sync.bootstrap()
            print(f"Label Studio project {project}: {ls_settings.url}/projects/{project}", file=sys.stderr)
            if watch:
                await _watch(sync, metrics_port, metrics_host)
                return 0
            summary = await sync.run_once(flush=flush)
            print(summary.describe())
            totals = await store.stats()
            print("totals so far: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
            return 0
        except LabelStudioUnavailable as exc:
            waiting = await store.settling_count()
            print(
                f"hhh: Label Studio unavailable ({exc}). Nothing is lost: {waiting} prompts wait in Redis "
                "for the next sync.",
                file=sys.stderr,
            )
            return 1
        except (LabelStudioRefused, SyncBusy) as exc:
            print(f"hhh: {exc}", file=sys.stderr)
            return 1
        finally:
            progress.finish()
            with contextlib.suppress(Exception):
                await lock.release()


def _feedback_sync(args: argparse.Namespace) -> int:
    import redis.exceptions

    settings = settings_for(args)
    labelstudio = settings.feedback.labelstudio
    for key, value, variable in (("url", labelstudio.url, "LABEL_STUDIO_URL"),
                                 ("api_key", labelstudio.api_key, "LABEL_STUDIO_API_KEY")):  # fmt: skip
        if not value:
            raise ConfigError(f"feedback.labelstudio.{key}: required to sync (or set {variable})")
    configure_logging(args.log_level or ("info" if args.watch else "warning"))
    redis_dir = Path(settings.data_dir).expanduser() / "redis"
    show_progress = sys.stderr.isatty() or args.progress
    try:
        sync = _sync(
            settings, redis_dir, args.watch, args.flush, show_progress, args.metrics_port, args.metrics_host
        )
        return asyncio.run(sync)
    except redis.exceptions.RedisError as exc:
        print(f"hhh: Redis unavailable ({exc}); nothing was pushed or stored", file=sys.stderr)
        return 1


def _export_summary(gathered: Any, options: Any, written: dict[str, int], out: Path) -> str:
    counts, report, ai = gathered.counts, gathered.agreement, gathered.ai_agreement
    splits = ", ".join(f"{split} {count}" for split, count in written.items()) or "none"
    dropped = {k.removeprefix("dropped_"): v for k, v in counts.items() if k.startswith("dropped_")}
    lines = [
        f"exported {sum(written.values())} pairs ({splits}) as {options.format} to {out}",
        f"pairs by source: {_kept_by_source(gathered, options.selected)}",
        f"from {counts.get('tasks', 0)} ranked tasks ({counts.get('annotations', 0)} annotations), "
        f"{counts.get('feedback', 0)} user feedback events and {counts.get('revisions', 0)} revisions; "
        "dropped: " + (", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) or "none"),
        "annotator agreement: "
        + ("n/a (no task had two annotators)" if report.rate is None else f"{report.rate:.1%}")
        + f" over {report.comparisons} comparisons; dataset card: {out / 'README.md'}",
    ]
    if ai is not None:
        lines.append(
            "AI feedback vs human rankings: "
            + ("no overlap" if ai.rate is None else f"{ai.rate:.1%} agree over {ai.judgements} judgements")
        )
    return "\n".join(lines)


def _kept_by_source(gathered: Any, selected: tuple[str, ...]) -> str:
    from collections import Counter

    from feedback.preferences.ai_feedback import group_of

    kept = Counter(group_of(pair.comparison.source) for pair in gathered.pairs)
    return ", ".join(f"{source} {kept[source]}" for source in selected)


async def _export(settings: Settings, redis_dir: Path, options: Any, out: Path, show_progress: bool) -> int:
    from tqdm import tqdm

    from feedback.collector import EventCollector
    from feedback.preferences.export import gather
    from feedback.preferences.writer import write_dataset
    from feedback.store import FeedbackStore

    async with redis_for(settings, redis_dir) as client:
        store = FeedbackStore(client)
        # Events not yet filed (no sync has run since, or there is no Label Studio at all): users'
        # feedback lives in the stream until then. Filing is idempotent, so a sync running beside us is
        # no harm.
        collector = EventCollector(
            client, store, settings.redis.stream, settings.feedback.labelstudio.settle_s
        )
        await collector.ensure_group()
        with tqdm(desc="collecting events", unit="event", disable=not show_progress) as bar:
            while filed := await collector.collect():
                bar.update(filed)
        total = len(await store.annotated_task_keys())
        with tqdm(total=total, desc="reading rankings", unit="task", disable=not show_progress) as bar:
            gathered = await gather(store, options, bar.update)
    with tqdm(total=len(gathered.pairs), desc="writing pairs", unit="pair", disable=not show_progress) as bar:
        written = await asyncio.to_thread(
            write_dataset, gathered, options, out, settings.feedback.labelstudio.url, bar.update
        )
    print(_export_summary(gathered, options, written, out))
    return 0 if written else 1


def _sources(given: list[str] | None) -> tuple[str, ...]:
    """``--sources``, repeatable and comma-separated alike; none given: the default (no AI feedback)."""
    from feedback.preferences.ai_feedback import DEFAULT_SOURCES

    names = tuple(name.strip() for value in given or () for name in value.split(",") if name.strip())
    return names or DEFAULT_SOURCES


def _feedback_export(args: argparse.Namespace) -> int:
    from feedback.preferences.export import ExportOptions

    settings = settings_for(args)
    configure_logging(args.log_level or "warning")
    options = ExportOptions(
        format=args.format, aggregation=args.aggregate, ties=args.ties, margin=args.margin,
        blocked=args.blocked, redacted=args.redacted, test_fraction=args.test_fraction,
        split_seed=args.split_seed, sources=_sources(args.sources), tenants=tuple(args.tenant or ()),
        min_annotators=args.min_annotators,
        min_gold_accuracy=args.min_gold_accuracy,
    )  # fmt: skip
    redis_dir = Path(settings.data_dir).expanduser() / "redis"
    show_progress = sys.stderr.isatty() or args.progress
    return asyncio.run(_export(settings, redis_dir, options, args.out, show_progress))


def _train_reward(args: argparse.Namespace) -> int:
    from feedback.preferences.reward_training import TrainingOptions, train_reward_model

    configure_logging(args.log_level or "warning")
    if args.base is None:
        from guards.models.sentence_embeddings import default_embedding_model

        args.base = default_embedding_model()  # all-MiniLM-L6-v2, shipped on PyPI; a fresh scoring head
    options = TrainingOptions(
        base=args.base, epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
        learning_rate=args.learning_rate, max_length=args.max_length, seed=args.seed, device=args.device,
    )  # fmt: skip
    report = train_reward_model(args.data, args.out, options)
    accuracy = "n/a (no test split)" if report.test_accuracy is None else f"{report.test_accuracy:.1%}"
    print(
        f"trained {report.steps} steps on {report.train_pairs - report.too_long} pairs ({report.device}; "
        f"{report.too_long} over --max-length left out); "
        f"final training loss {report.train_loss:.4f}; held-out pairwise accuracy {accuracy} on "
        f"{report.test_pairs} pairs (chance: 50%)\nreward model saved to {args.out}: one output, its logit "
        "is the reward"
    )
    return 0


def add_feedback_commands(commands: Any, config_help: str) -> Any:
    """The ``feedback`` actions; returns their subparsers (``constitute`` is added to them by main)."""
    feedback = commands.add_parser(
        "feedback", help="human feedback: Label Studio sync, preference datasets, reward models"
    ).add_subparsers(dest="feedback_command", required=True, metavar="ACTION")
    sync = feedback.add_parser(
        "sync",
        help="push ranking tasks to Label Studio and take annotations back",
        description="One round, then a summary: file recorded events into candidate sets (Redis consumer "
        "group), push every settled prompt with two or more answers as a ranking task (batched, never "
        "twice), and poll the tasks changed since the last round for annotations (the webhook's safety "
        "net). Settings: feedback.labelstudio in the config file.",
    )
    sync.add_argument("--config", type=Path, default=os.environ.get("HHH_CONFIG"), help=config_help)
    sync.add_argument("--watch", action="store_true", help="keep going: a round every poll_interval_s")
    sync.add_argument(
        "--flush", action="store_true", help="push every waiting prompt now, without waiting for it to settle"
    )
    sync.add_argument("--progress", action="store_true", help=PROGRESS_HELP)
    sync.add_argument(
        "--metrics-port", type=int, help="--watch: serve Prometheus metrics on HOST:PORT/metrics"
    )
    sync.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="--metrics-port: the address to listen on (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    sync.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log verbosity")
    sync.set_defaults(handler=_feedback_sync)

    from feedback.preferences.aggregate import AGGREGATIONS
    from feedback.preferences.formats import FORMATS

    export = feedback.add_parser(
        "export",
        help="turn rankings and user feedback into a pairwise preference dataset",
        description="Every ranking of K answers gives C(K,2) pairs, the higher-ranked answer 'chosen'; "
        "users' preferred choices and thumbs give pairs where they imply one. Written to OUT as JSON lines "
        "and Parquet (train/test split by prompt), with provenance in OUT/meta and a dataset card.",
    )
    export.add_argument("--format", choices=FORMATS, default="trl", help="row layout (default: trl)")
    export.add_argument("--out", type=Path, required=True, help="directory to write the dataset to")
    export.add_argument("--config", type=Path, default=os.environ.get("HHH_CONFIG"), help=config_help)
    export.add_argument(
        "--aggregate", choices=AGGREGATIONS, default="none",
        help="several annotators: a row per annotator (none), majority vote, or a Bradley-Terry fit",
    )  # fmt: skip
    export.add_argument("--ties", action="store_true", help="tied answers give a pair with margin 0")
    export.add_argument("--margin", action="store_true", help="add a margin column (TRL formats)")
    export.add_argument(
        "--blocked", choices=["exclude", "include"], default="exclude",
        help="pairs with an answer a guard blocked (its text is the refusal; default: exclude)",
    )  # fmt: skip
    export.add_argument(
        "--redacted", choices=["include", "exclude"], default="include",
        help="pairs with an answer a guard redacted (it stays redacted; default: include)",
    )  # fmt: skip
    export.add_argument("--test-fraction", type=float, default=0.1, help="share of prompts held out (0.1)")
    export.add_argument("--split-seed", default="hhh", help="salt of the split by prompt")
    export.add_argument(
        "--sources", action="append", metavar="SOURCE",
        help="repeatable or comma-separated: human (Label Studio rankings; old name: rankings), "
        "user-feedback (POST /v1/feedback; old name: feedback), ai-feedback (a critic's revisions: the "
        "revision chosen, the original rejected). Default: human and user-feedback, never ai-feedback "
        "unless asked; the card counts each",
    )  # fmt: skip
    export.add_argument("--tenant", action="append", help="only this tenant's traffic (repeatable)")
    export.add_argument(
        "--min-annotators", type=int, default=1, help="only tasks ranked by at least N annotators (1)"
    )
    export.add_argument(
        "--min-gold-accuracy",
        type=float,
        default=None,
        help="leave out annotators whose accuracy on gold tasks is below this (0-1; default: keep all)",
    )
    export.add_argument("--progress", action="store_true", help=PROGRESS_HELP)
    export.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log verbosity")
    export.set_defaults(handler=_feedback_export)

    train = feedback.add_parser(
        "train-reward",
        help="train a reward model on an exported preference dataset (TRL RewardTrainer)",
        description="Fine-tune a sequence classifier with one output (its logit is the reward) on the "
        "train split of an export with the pairwise loss -log sigmoid(r_chosen - r_rejected), then "
        "measure the pairwise accuracy on the test split. Any export format is accepted.",
    )
    train.add_argument("--data", type=Path, required=True, help="a folder written by `hhh feedback export`")
    train.add_argument("--out", type=Path, required=True, help="where to save the reward model")
    train.add_argument("--base", help="base model id or path (default: the all-MiniLM-L6-v2 shipped on PyPI)")
    train.add_argument("--epochs", type=float, default=1.0)
    train.add_argument(
        "--max-steps", type=int, default=-1, help="stop after this many steps (default: epochs)"
    )
    train.add_argument("--batch-size", type=int, default=16, help="pairs a step")
    train.add_argument("--learning-rate", type=float, default=5e-5)
    train.add_argument("--max-length", type=int, default=512, help="tokens; longer pairs are left out")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    train.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log verbosity")
    train.set_defaults(handler=_train_reward)
    add_evaluate_reward_command(feedback, PROGRESS_HELP)
    return feedback
