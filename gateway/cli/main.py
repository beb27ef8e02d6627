"""The ``hhh`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from gateway import __version__
from gateway.cli.common import configure_logging, settings_for
from gateway.cli.constitute import add_constitute_command
from gateway.cli.feedback import add_feedback_commands
from gateway.relay.embedded_llm import EmbeddedLLMError
from gateway.settings import ConfigError
from guards.policy import PolicyError

log = logging.getLogger("hhh.serve")

# What the IP index has always been read and written with (redis-py's default), whatever redis-py's is.
IP_INDEX_REDIS_TIMEOUT_S = 5.0


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.relay.embedded_llm import check_embedded_llm
    from gateway.server.http_limits import uvicorn_options
    from gateway.server.model_threads import limit_model_threads
    from gateway.server.shutdown import serve

    settings = settings_for(args)
    configure_logging(settings.server.log_level)
    threads = limit_model_threads(settings.server.model_threads)  # before any model library loads
    log.info("models use %d CPU thread(s) a call", threads)
    if args.workers > 1:
        from gateway.server.workers import Supervisor, require_shared_resources

        require_shared_resources(settings, args.workers)  # a config error naming the options, not a crash
        return Supervisor(settings, args.workers).run()
    if not settings.upstreams:
        check_embedded_llm(settings.embedded_llm)  # fail before the server starts, without a traceback
    app = create_app(settings)
    serve(  # uvicorn.run, with streams ended cleanly at shutdown (server.shutdown_grace_s)
        app,
        app.state.drain,
        **uvicorn_options(settings.server.limits),  # the http protocol, keep-alive and concurrency limits
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        access_log=settings.server.access_log,
        loop="auto",
    )
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _keys_new(args: argparse.Namespace) -> int:
    from gateway.auth import new_key

    key, digest = new_key()
    print(f"API key for tenant {args.tenant!r} (shown once; give it to the client):\n  {key}\n")
    print("Add this to the config file under auth.keys:")
    print(f'  - tenant: {args.tenant}\n    sha256: "{digest}"')
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from gateway.app import used_guards
    from gateway.credentials import mask_credentials
    from gateway.guarded.revision import load_constitutions
    from guards.registry import GuardResources, build_guards
    from guards.runner import RunnerPool

    settings = settings_for(args)
    # Building guards loads no model; it checks their configs and every policy's references.
    guards = build_guards(settings.guards, GuardResources(RunnerPool(), None, Path(settings.data_dir)))
    used = used_guards(settings, guards)
    load_constitutions(settings.policies)  # a revise rule's constitution file must load
    masked = msgspec.to_builtins(settings)
    for upstream in masked["upstreams"]:
        upstream["url"] = mask_credentials(upstream["url"])
        if upstream.get("api_key"):
            upstream["api_key"] = "***"
    if masked["redis"].get("url"):
        masked["redis"]["url"] = mask_credentials(masked["redis"]["url"])
    operations = masked["server"]["operations"]
    if operations.get("metrics_token"):
        operations["metrics_token"] = "***"
    labelstudio = masked["feedback"]["labelstudio"]
    if labelstudio.get("url"):
        labelstudio["url"] = mask_credentials(labelstudio["url"])
    for secret in ("api_key", "webhook_secret"):
        if labelstudio.get(secret):
            labelstudio[secret] = "***"
    print(msgspec.json.format(msgspec.json.encode(masked), indent=2).decode())
    print(f"\nconfig OK; guards in use: {', '.join(sorted(used)) or 'none'}", file=sys.stderr)
    return 0


def _config_reference(args: argparse.Namespace) -> int:
    from gateway.reference.build import configuration_reference

    text = configuration_reference()
    if args.out is None:
        print(text, end="")
        return 0
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"hhh: {args.out} is stale; run: hhh config reference --out {args.out}", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _grounding_index(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from guards.grounding.citation_db import build_index, read_corpus
    from guards.models.sentence_embeddings import load_embedder

    configure_logging("warning")
    embedder = load_embedder(args.model, args.device)
    total = sum(1 for line in args.corpus.open() if line.strip())
    with tqdm(total=total, unit="passage", desc="indexing") as bar:
        count = build_index(read_corpus(args.corpus), embedder.embed, args.out, args.batch_size, bar.update)
    print(
        f"indexed {count} passages into {args.out} "
        f"({embedder.dimension} dimensions, {embedder.placement.key})"
    )
    print(
        "use it with:  guards: {grounding: {type: grounding, config: {citation_db: " + str(args.out) + "}}}"
    )
    return 0


async def _redis_index(location: str, save: Any = None) -> Any:
    from feedback.redis_connection import redis_client
    from guards.ip.redis_store import load_from_redis, save_to_redis, split_location

    url, name = split_location(location)
    client = redis_client(url, timeout_s=IP_INDEX_REDIS_TIMEOUT_S)
    try:
        if save is not None:
            return await save_to_redis(save, client, name)
        return await load_from_redis(client, name)
    finally:
        await client.aclose()


def _ip_index(args: argparse.Namespace) -> int:
    import asyncio

    from tqdm import tqdm

    from guards.ip.corpus import corpus_size, read_corpus
    from guards.ip.index import FingerprintIndex

    in_redis = args.out.startswith(("redis://", "rediss://"))
    if in_redis:
        index = asyncio.run(_redis_index(args.out)) or FingerprintIndex(args.shingle_words, args.window)
    else:
        index = FingerprintIndex.open_or_create(Path(args.out), k=args.shingle_words, w=args.window)
    before = len(index.documents)
    skipped: list[Path] = []

    def report_skip(path: Path, reason: str) -> None:
        skipped.append(path)
        tqdm.write(f"hhh: skipped {path}: {reason}", file=sys.stderr)  # above the progress bar

    with tqdm(total=corpus_size(args.corpus), unit="char", unit_scale=True, desc="indexing") as bar:
        added = index.add(read_corpus(args.corpus, report_skip), bar.update)
    if in_redis:
        asyncio.run(_redis_index(args.out, save=index))
    else:
        index.save(Path(args.out))
    replaced = len(index.retired)
    print(
        f"indexed {added} documents into {args.out} ({before} there before, {replaced} versions retired); "
        f"{index.nbytes / 1e6:.1f} MB of fingerprints in {len(index.segments)} segment(s); "
        f"{len(skipped)} file(s) skipped"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hhh",
        description="HHH Gateway: an OpenAI-compatible gateway with guardrails and human feedback.",
    )
    parser.add_argument("--version", action="version", version=f"hhh-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config_help = "YAML settings file (default: $HHH_CONFIG, else built-in defaults)"
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. With no upstream configured (no config file upstreams and no "
        "HHH_UPSTREAM_URL), it starts an embedded llama.cpp server with a tiny model and proxies to it.",
    )
    serve.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port, 8080)")
    serve.add_argument("--config", type=Path, default=os.environ.get("HHH_CONFIG"), help=config_help)
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log verbosity")
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=os.environ.get("HHH_WORKERS", "1"),  # argparse applies the type to it
        help="gateway processes on the one port, each with its own models (default: HHH_WORKERS, or 1); "
        "more than one needs an upstream and redis.url",
    )
    serve.set_defaults(handler=_serve)

    keys = commands.add_parser("keys", help="manage gateway API keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    keys_new = keys.add_parser("new", help="make a new API key and print its hash for the config")
    keys_new.add_argument("--tenant", required=True, help="the tenant this key belongs to")
    keys_new.set_defaults(handler=_keys_new)

    config = commands.add_parser("config", help="inspect configuration").add_subparsers(
        dest="config_command", required=True, metavar="ACTION"
    )
    check = config.add_parser("check", help="validate a config file and print the resolved settings")
    check.add_argument("--config", type=Path, default=os.environ.get("HHH_CONFIG"), help=config_help)
    check.set_defaults(handler=_config_check)
    reference = config.add_parser(
        "reference",
        help="write the configuration reference (every key, type, default and meaning) as Markdown",
        description="Generate the configuration reference from the settings types, whose field comments "
        "are the keys' meanings. docs/configuration.md is this command's output.",
    )
    reference.add_argument("--out", type=Path, help="file to write (default: print to stdout)")
    reference.add_argument("--check", action="store_true", help="only check that --out is up to date")
    reference.set_defaults(handler=_config_reference)
    grounding = commands.add_parser(
        "grounding", help="the grounding guard's citation database"
    ).add_subparsers(dest="grounding_command", required=True, metavar="ACTION")
    index = grounding.add_parser(
        "index",
        help="build a verified citation database from a JSON-lines corpus",
        description="Embed every passage of CORPUS (JSON lines with id and text; title and url optional) "
        "and write an index directory for the grounding guard's citation_db setting.",
    )
    index.add_argument("--corpus", type=Path, required=True, help="JSON-lines file of passages")
    index.add_argument("--out", type=Path, required=True, help="directory to write the index to")
    index.add_argument("--model", help="sentence-transformers directory (default: all-MiniLM-L6-v2)")
    index.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    index.add_argument("--batch-size", type=int, default=64)
    index.set_defaults(handler=_grounding_index)

    ip = commands.add_parser("ip", help="the IP guard's protected-corpus index").add_subparsers(
        dest="ip_command", required=True, metavar="ACTION"
    )
    ip_index = ip.add_parser(
        "index",
        help="index protected works (incremental: adds to an existing index)",
        description="Fingerprint every document of CORPUS (a JSON-lines manifest with id, path or text, "
        "title, owner, licence, url; or a directory) into the index at OUT, adding a segment to it if it "
        "exists. A document id indexed again replaces its earlier version.",
    )
    ip_index.add_argument("--corpus", type=Path, required=True, help="manifest (.jsonl) or directory")
    ip_index.add_argument(
        "--out",
        required=True,
        help="index directory, or redis://host:port/db?name=NAME (created or extended)",
    )
    ip_index.add_argument("--shingle-words", type=int, default=4, help="words a shingle (new index only)")
    ip_index.add_argument("--window", type=int, default=6, help="winnowing window (new index only)")
    ip_index.set_defaults(handler=_ip_index)
    add_constitute_command(add_feedback_commands(commands, config_help), config_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (ConfigError, PolicyError, EmbeddedLLMError) as exc:
        print(f"hhh: configuration error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"hhh: {exc}", file=sys.stderr)
        return 1
    return code
