"""What ``/v1/responses`` costs over ``/v1/chat/completions``: the gateway's added latency at concurrency 1,
no guards, in one run, interleaved, against the same fast stub (``fast_stub``):

- ``chat``: ``/v1/chat/completions`` (the plain relay);
- ``responses, translated``: ``/v1/responses`` to a chat upstream (translated, reshaped back);
- ``responses, native``: ``/v1/responses`` to an upstream marked ``supports_responses`` (read as chat,
  written back as a Response).

    python -m tests.benchmarks.responses_overhead [--requests 2000] [--rounds 3]

Each row's added latency is against calling the stub directly on the same path (chat or responses). The
table goes to stdout and to ``tests/benchmarks/results/responses_overhead.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import yaml

from gateway.relay.embedded_llm import free_port
from tests.support.servers import gateway_process, stop, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "benchmarks" / "results" / "responses_overhead.md"
CHAT = {
    "model": "stub-model",
    "messages": [{"role": "user", "content": "Say something short."}],
    "max_tokens": 16,
}
TRANSLATED = {"model": "stub-model", "input": "Say something short.", "max_output_tokens": 16}
NATIVE = {**TRANSLATED, "model": "stub-native"}


@contextmanager
def stub() -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "tests.benchmarks.fast_stub", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v1/models", process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


def timings(client: httpx.Client, url: str, body: dict[str, object], count: int) -> list[float]:
    """Milliseconds per request, one at a time (after a warm-up)."""
    for _ in range(min(50, count)):
        client.post(url, json=body).raise_for_status()
    out = []
    for _ in range(count):
        started = time.perf_counter()
        client.post(url, json=body).raise_for_status()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with ExitStack() as stack:
        stub_url = stack.enter_context(stub())
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        config = {
            "data_dir": str(logs / "data"),
            "feedback": {"record": False},
            "policies": {"default": {}},
            "server": {"log_level": "warning"},
            "upstreams": [
                {"name": "chat", "url": stub_url, "models": ["stub-model"]},
                {"name": "native", "url": stub_url, "models": ["stub-native"], "supports_responses": True},
            ],
        }
        (logs / "gateway.yaml").write_text(yaml.safe_dump(config))
        gateway = stack.enter_context(gateway_process(logs / "gateway.yaml", logs))
        client = stack.enter_context(httpx.Client(timeout=30))
        cells = {
            "direct (stub), chat": (f"{stub_url}/chat/completions", CHAT, None),
            "direct (stub), responses": (f"{stub_url}/responses", NATIVE, None),
            "chat completions": (f"{gateway}/chat/completions", CHAT, "direct (stub), chat"),
            "responses, translated": (f"{gateway}/responses", TRANSLATED, "direct (stub), chat"),
            "responses, native": (f"{gateway}/responses", NATIVE, "direct (stub), responses"),
        }
        samples: dict[str, list[float]] = {name: [] for name in cells}
        for _ in range(args.rounds):  # interleaved: a slow spell of the machine hits every row alike
            for name, (url, body, _) in cells.items():
                samples[name] += timings(client, url, body, args.requests)
    p50 = {name: statistics.median(values) for name, values in samples.items()}
    p99 = {name: statistics.quantiles(values, n=100)[98] for name, values in samples.items()}
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()}; {args.rounds} interleaved rounds of "
        f"{args.requests:,} sequential requests per row (concurrency 1), httpx client, stub and gateway "
        "on the same machine, no guards.",
        "",
        "| path | p50 ms | p99 ms | added p50 ms | added p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (_, _, baseline) in cells.items():
        added = (
            ("", "")
            if baseline is None
            else (f"+{p50[name] - p50[baseline]:.2f}", f"+{p99[name] - p99[baseline]:.2f}")
        )
        lines.append(f"| {name} | {p50[name]:.2f} | {p99[name]:.2f} | {added[0]} | {added[1]} |")
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.write_text(table)


if __name__ == "__main__":
    main()
