"""``hhh feedback constitute``: Constitutional AI offline, over red-team prompts or recorded traffic.

The logic is in ``feedback.constitute``; here are the options, the wiring (an OpenAI-compatible server,
Redis only for ``--recorded`` and ``--record``), the progress bar and the summary."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from gateway.cli.common import configure_logging, settings_for
from gateway.cli.feedback import PROGRESS_HELP, redis_for
from gateway.settings import ConfigError, Settings

DESCRIPTION = (
    "For each prompt, ask --model for an answer, then ask --critic-model to critique it against "
    "--principles-per-answer principles drawn from the constitution (seeded) and to revise it. Writes to "
    "--out: sft/ (TRL conversational `messages`: prompt and revision), preference/<format>/ (chosen: the "
    "revision, rejected: the answer; with --ai-ranking the critic's choice, its probability as margin), "
    "and README.md (the card). Resumable: a rerun into the same --out skips prompts already done."
)


def _options(args: argparse.Namespace) -> Any:
    from feedback.constitute.run import ConstituteOptions

    return ConstituteOptions(
        model=args.model, critic_model=args.critic_model or args.model,
        principles_per_answer=args.principles_per_answer, principle_pool=tuple(args.principle or ()),
        seed=args.seed, concurrency=args.concurrency, max_tokens=args.max_tokens,
        temperature=args.temperature, ai_ranking=args.ai_ranking,
    )  # fmt: skip


async def _prompts(args: argparse.Namespace, settings: Settings, redis: Any) -> list[Any]:
    from feedback.constitute.prompts import load_prompts, recorded_prompts

    if args.prompts is not None:
        return load_prompts(args.prompts)
    found = [
        p async for p in recorded_prompts(redis, settings.redis.stream, tuple(args.tenant or ()), args.limit)
    ]
    if not found:
        raise ConfigError(
            "--recorded: no recorded chat completions" + (" of --tenant" if args.tenant else "")
        )
    return found


async def _run(args: argparse.Namespace, settings: Settings, redis_dir: Path, show_progress: bool) -> int:
    from contextlib import AsyncExitStack

    from tqdm import tqdm

    from feedback.constitute.critic import ChatClient
    from feedback.constitute.run import constitute_all, principle_pool
    from feedback.constitute.state import RunState
    from feedback.constitution import load_constitution

    options = _options(args)
    constitution = load_constitution(args.constitution)
    pool = principle_pool(constitution, options.principle_pool)
    state = RunState(args.out)
    async with AsyncExitStack() as stack:
        redis = None
        if args.recorded or args.record:
            redis = await stack.enter_async_context(redis_for(settings, redis_dir))
        prompts = await _prompts(args, settings, redis)
        state.claim(options.identity(constitution))
        client = ChatClient(args.base_url, args.api_key, args.timeout)
        stack.push_async_callback(client.aclose)
        todo = len(prompts) - len(state.load().keys() & {p.key for p in prompts})
        with tqdm(total=todo, desc="constituting", unit="prompt", disable=not show_progress) as bar:
            summary = await constitute_all(client, options, pool, prompts, state, bar.update)
        keys = {p.key for p in prompts}
        results = [r for key, r in state.load().items() if key in keys]
        recorded = await _record(args, settings, redis, options, constitution, results)
    print(await asyncio.to_thread(_write, args, options, constitution, summary, results, recorded))
    return 0 if results else 1


async def _record(
    args: argparse.Namespace,
    settings: Settings,
    redis: Any,
    options: Any,
    constitution: Any,
    results: list[Any],
) -> tuple[int, int] | None:
    if not args.record:
        return None
    from feedback.constitute.output import record, revision_events

    run = hashlib.sha256(msgspec.json.encode(options.identity(constitution))).hexdigest()[:16]
    events, skipped = revision_events(results, args.record_tenant, run)
    await record(redis, settings.redis.stream, settings.redis.max_length, events)
    return len(events), skipped


def _write(
    args: argparse.Namespace,
    options: Any,
    constitution: Any,
    summary: Any,
    results: list[Any],
    recorded: tuple[int, int] | None,
) -> str:
    from feedback.constitute.card import CardFacts, run_card
    from feedback.constitute.output import place_cards, write_outputs

    formats = tuple(dict.fromkeys(args.format or ["trl"]))
    written = write_outputs(args.out, results, formats, args.test_fraction, args.split_seed)
    facts = CardFacts(
        base_url=args.base_url, constitution=str(args.constitution or "built-in"),
        constitution_digest=options.identity(constitution)["constitution"], formats=formats,
        recorded=None if recorded is None else recorded[0],
        not_recorded=0 if recorded is None else recorded[1],
    )  # fmt: skip
    place_cards(args.out, written, run_card(options, facts, summary, results, written))
    failures = ", ".join(f"{reason} {count}" for reason, count in sorted(summary.failures.items()))
    lines = [
        f"constituted {summary.done} prompts ({summary.skipped} already done, {summary.failed} failed"
        + (f": {failures}" if failures else "") + f") of {summary.prompts}",
        f"SFT rows {sum(written.sft.values())}, preference pairs {sum(written.pairs.values())} "
        f"({', '.join(formats)}) in {args.out}; card: {args.out / 'README.md'}",
    ]  # fmt: skip
    if recorded is not None:
        lines.append(
            f"recorded {recorded[0]} revision events ({recorded[1]} not: the critic preferred the answer)"
        )
    return "\n".join(lines)


def _feedback_constitute(args: argparse.Namespace) -> int:
    import redis.exceptions

    if (args.prompts is None) == (not args.recorded):
        raise ConfigError("--prompts FILE or --recorded: exactly one")
    if not 0.0 <= args.test_fraction < 1.0:
        raise ConfigError("--test-fraction: at least 0 and below 1")
    if args.timeout <= 0 or (args.limit is not None and args.limit < 1):
        raise ConfigError(f"{'--timeout' if args.timeout <= 0 else '--limit'}: must be positive")
    settings = settings_for(args)
    configure_logging(args.log_level or "warning")
    show_progress = sys.stderr.isatty() or args.progress
    try:
        redis_dir = Path(settings.data_dir).expanduser() / "redis"
        return asyncio.run(_run(args, settings, redis_dir, show_progress))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    except redis.exceptions.RedisError as exc:
        print(f"hhh: Redis unavailable ({exc})", file=sys.stderr)
        return 1


def add_constitute_command(feedback: Any, config_help: str) -> None:
    command = feedback.add_parser(
        "constitute",
        help="Constitutional AI offline: critique and revise answers into SFT and preference data",
        description=DESCRIPTION,
    )  # fmt: skip
    source = command.add_mutually_exclusive_group()
    source.add_argument("--prompts", type=Path, help='JSON lines: {"id"?, "prompt"} or {"id"?, "messages"}')
    source.add_argument("--recorded", action="store_true", help="the prompts of recorded chat completions")
    command.add_argument("--tenant", action="append", help="--recorded: only this tenant's (repeatable)")
    command.add_argument("--limit", type=int, help="--recorded: at most this many prompts")
    command.add_argument("--out", type=Path, required=True, help="output folder (a rerun into it resumes)")
    command.add_argument(
        "--base-url", default=os.environ.get("HHH_CONSTITUTE_BASE_URL", "http://127.0.0.1:8080/v1"),
        help="any OpenAI-compatible server: the gateway itself or an upstream (default: the local gateway)",
    )  # fmt: skip
    command.add_argument(
        "--api-key", default=os.environ.get("HHH_CONSTITUTE_API_KEY"),
        help="its key (default: $HHH_CONSTITUTE_API_KEY; none sent without one)",
    )  # fmt: skip
    _critic_options(command)
    _output_options(command, config_help)
    command.set_defaults(handler=_feedback_constitute)


def _critic_options(command: Any) -> None:
    command.add_argument("--model", required=True, help="the model that answers")
    command.add_argument(
        "--critic-model", help="the model that critiques, revises and ranks (default: --model)"
    )
    command.add_argument("--constitution", type=Path, help="a constitution YAML file (default: built-in)")
    command.add_argument(
        "--principles-per-answer", type=int, default=2, help="principles drawn per answer (2)"
    )
    command.add_argument(
        "--principle", action="append", help="draw only from these principle ids (repeatable)"
    )
    command.add_argument("--seed", type=int, default=0, help="seeds the draws and the answer's sampling (0)")
    command.add_argument(
        "--ai-ranking", action="store_true",
        help="the critic also says which of answer and revision better follows a drawn principle (RL-CAI); "
        "its first-token probabilities of A/B are kept where the server gives logprobs",
    )  # fmt: skip
    command.add_argument("--concurrency", type=int, default=4, help="prompts at once (4)")
    command.add_argument("--timeout", type=float, default=120.0, help="seconds per call (120)")
    command.add_argument(
        "--max-tokens", type=int, default=256, help="per answer, critique and revision (256)"
    )
    command.add_argument(
        "--temperature", type=float, default=0.7, help="the answer's (0.7); the critic is greedy"
    )


def _output_options(command: Any, config_help: str) -> None:
    from feedback.preferences.formats import FORMATS

    command.add_argument(
        "--format", action="append", choices=FORMATS, help="preference format(s) (default: trl)"
    )
    command.add_argument("--test-fraction", type=float, default=0.1, help="share of prompts held out (0.1)")
    command.add_argument("--split-seed", default="hhh", help="salt of the split by prompt")
    command.add_argument(
        "--record", action="store_true",
        help="also record each result as a RevisionEvent (origin constitute) in the event stream, for "
        "`hhh feedback export --sources ai-feedback`",
    )  # fmt: skip
    command.add_argument(
        "--record-tenant", default="constitute", help="--record: the tenant of file prompts (constitute)"
    )
    command.add_argument("--config", type=Path, default=os.environ.get("HHH_CONFIG"), help=config_help)
    command.add_argument("--progress", action="store_true", help=PROGRESS_HELP)
    command.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log verbosity")
