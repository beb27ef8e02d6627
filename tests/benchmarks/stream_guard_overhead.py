"""What output guards cost a stream: time to first token and total time, in ``buffer`` mode with the
default guards (toxicity classic tier + presidio PII), against the same stream through the gateway
with no guards, and called directly. All in one run, against one stub upstream that streams a
300-word answer a word a chunk.

    python -m tests.benchmarks.stream_guard_overhead [--requests 20] [--token-delay-ms 0 20]

``--token-delay-ms 20`` paces the stub like an LLM at 50 tokens/s, where guards can work while the
model writes. The table goes to ``tests/benchmarks/results/stream_guard_overhead.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import yaml

from gateway.relay.embedded_llm import free_port
from tests.benchmarks.proxy_overhead import command_line, machine, process
from tests.support.servers import wait_until_up

RESULTS = Path(__file__).resolve().parent / "results" / "stream_guard_overhead.md"
BODY = {
    "model": "stub-long",
    "messages": [{"role": "user", "content": "Tell me about the town."}],
    "stream": True,
}


def start_stub(stack: ExitStack, logs: Path, delay_ms: float) -> str:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tests.benchmarks.fast_stub",
        "--port",
        str(port),
        "--token-delay-ms",
        str(delay_ms),
    ]
    proc = stack.enter_context(process(command, logs / f"stub-{delay_ms}.log"))
    wait_until_up(f"http://127.0.0.1:{port}/v1/models", proc)
    return f"http://127.0.0.1:{port}/v1"


def start_gateway(stack: ExitStack, logs: Path, stub: str, guarded: bool) -> str:
    config: dict[str, object] = {"upstreams": [{"name": "stub", "url": stub}], "data_dir": str(logs)}
    if not guarded:
        config["policies"] = {"default": {}}
    path = logs / f"gateway-{'guarded' if guarded else 'plain'}-{free_port()}.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--config",
        str(path),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = stack.enter_context(process(command, logs / f"{path.stem}.log"))
    wait_until_up(f"http://127.0.0.1:{port}/health", proc, timeout=180)
    return f"http://127.0.0.1:{port}/v1"


def one_stream(client: httpx.Client, base: str) -> tuple[float, float, str]:
    started = time.perf_counter()
    first = 0.0
    text = ""
    with client.stream("POST", f"{base}/chat/completions", json=BODY) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices", []):
                content = (choice.get("delta") or {}).get("content")
                if content:
                    first = first or time.perf_counter() - started
                    text += content
    return first, time.perf_counter() - started, text


def measure(base: str, requests: int) -> tuple[float, float, str]:
    with httpx.Client(timeout=120) as client:
        one_stream(client, base)  # warm-up
        runs = [one_stream(client, base) for _ in range(requests)]
    return (
        statistics.median(r[0] for r in runs) * 1000,
        statistics.median(r[1] for r in runs) * 1000,
        runs[-1][2],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--token-delay-ms", type=float, nargs="+", default=[0.0, 10.0])
    args = parser.parse_args()
    rows = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="hhh-stream-bench-") as scratch:
        logs = Path(scratch)
        for delay in args.token_delay_ms:
            stub = start_stub(stack, logs, delay)
            targets = [
                ("direct (stub)", stub),
                ("gateway, no guards", start_gateway(stack, logs, stub, guarded=False)),
                ("gateway, default guards, buffer", start_gateway(stack, logs, stub, guarded=True)),
            ]
            results = {name: measure(base, args.requests) for name, base in targets}
            plain_ttft, plain_total, plain_text = results["gateway, no guards"]
            for name, (ttft, total, text) in results.items():
                added = (
                    ""
                    if name.startswith("direct")
                    else f"{ttft - plain_ttft:+.1f} | {total - plain_total:+.1f}"
                )
                assert text == plain_text, f"{name} changed the answer"
                rows.append(f"| {delay:.0f} | {name} | {ttft:.1f} | {total:.1f} | {added or ' | '} |")
                print(rows[-1], flush=True)
    report = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()} with `{command_line()}`; a 300-word answer "
        "streamed a word a chunk, "
        f"median of {args.requests} sequential streams. 'Added' is against the gateway with no guards.\n\n"
        "| stub ms/token | path | time to first token ms | total ms | added TTFT ms | added total ms |\n"
        "|---:|---|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    RESULTS.write_text(report)
    print("\n" + report)


if __name__ == "__main__":
    main()
