"""Throughput of one gateway process against ``hhh serve --workers 2``, in one run, with the default guards,
the fast stub upstream (its own process) and one real Redis; and the resident memory each worker costs.

    python -m tests.benchmarks.workers_throughput [--concurrency 16] [--seconds 10] [--rounds 2]

Both gateways are started first and measured in turn (the idle one costs next to nothing), alternating
for ``--rounds``, so a busy neighbour on a shared machine hits both alike. Each cell sends non-streamed
chat completions from ``--concurrency`` clients for ``--seconds``; every answer must be the stub's. RSS
is read from ``/proc/PID/status`` (VmRSS) after the load, for the single process and for each worker.
The table goes to ``tests/benchmarks/results/workers_throughput.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import yaml

from gateway.relay.embedded_llm import free_port
from tests.support.redis_server import redis_server
from tests.support.servers import wait_until_up

RESULTS = Path(__file__).resolve().parent / "results" / "workers_throughput.md"
BODY = {"model": "stub-model", "messages": [{"role": "user", "content": "Name a colour."}]}


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.extend(int(child) for child in (task / "children").read_text().split())
    return found


async def _cell(url: str, concurrency: int, seconds: float) -> tuple[int, int]:
    ok = failed = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency * 2)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one_client() -> None:
            nonlocal ok, failed
            while time.monotonic() < deadline:
                response = await client.post("/chat/completions", json=BODY)
                if response.status_code == 200 and "A short answer." in response.text:
                    ok += 1
                else:
                    failed += 1

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return ok, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    environment = {k: v for k, v in os.environ.items() if k not in ("HHH_UPSTREAM_URL", "REDIS_URL")}
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        directory = Path(scratch)
        stub_port = free_port()
        stub = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.fast_stub", "--port", str(stub_port)]
        )
        stack.callback(stub.wait)
        stack.callback(stub.terminate)
        redis_url = stack.enter_context(redis_server(directory))
        config = directory / "gateway.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(directory / "data"),
                    "redis": {"url": redis_url},
                    "upstreams": [{"name": "stub", "url": f"http://127.0.0.1:{stub_port}/v1"}],
                }
            )
        )
        targets: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
        for name, workers in (("one process", 1), ("--workers 2", 2)):
            port = free_port()
            command = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
            log = (directory / f"{workers}.log").open("wb")
            stack.callback(log.close)
            gateway = subprocess.Popen(
                [*command, "--workers", str(workers)], stdout=log, stderr=log, env=environment
            )
            stack.callback(gateway.wait)
            stack.callback(gateway.terminate)
            wait_until_up(f"http://127.0.0.1:{port}/health", gateway, timeout=300)
            targets[name] = (f"http://127.0.0.1:{port}/v1", gateway)
        for url, _ in targets.values():  # warm-up: the first guarded call in each worker loads lazily
            asyncio.run(_cell(url, args.concurrency, 3))
        results: dict[str, list[tuple[int, int]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, _) in targets.items():
                results[name].append(asyncio.run(_cell(url, args.concurrency, args.seconds)))
        lines = [
            "# Workers throughput",
            "",
            f"Default guards, fast stub upstream, one Redis; {args.concurrency} concurrent clients, "
            f"{args.rounds} x {args.seconds:g} s per target, alternating; non-streamed chat completions. "
            f"Machine: {os.cpu_count()} cores, shared with other work; "
            "the load generator and the stub run on it too.",
            "",
            "| target | answers/s (per round) | mean answers/s | failed | RSS (MiB) |",
            "|---|---|---|---|---|",
        ]
        for name, (_, gateway) in targets.items():
            rates = [ok / args.seconds for ok, _ in results[name]]
            failed = sum(f for _, f in results[name])
            pids = _children(gateway.pid) if name != "one process" else [gateway.pid]
            rss = [_rss_mib(pid) for pid in pids if _rss_mib(pid) > 100]  # workers, not the small helpers
            rss_text = " + ".join(f"{value:.0f}" for value in rss)
            if name != "one process":
                rss_text += f" (supervisor {_rss_mib(gateway.pid):.0f})"
            lines.append(
                f"| {name} | {' / '.join(f'{r:.0f}' for r in rates)} | {sum(rates) / len(rates):.0f} "
                f"| {failed} | {rss_text} |"
            )
        table = "\n".join(lines) + "\n"
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(table)
        print(table)


if __name__ == "__main__":
    main()
