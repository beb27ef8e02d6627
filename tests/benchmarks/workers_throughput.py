"""Throughput of one gateway process against ``hhh serve --workers 2``, in one run, with the default guards,
the fast stub upstream (its own process) and one real Redis; and the resident memory each worker costs.

    python -m tests.benchmarks.workers_throughput [--concurrency 16] [--seconds 10] [--rounds 2]
        [--containers IMAGE]

With ``--containers IMAGE`` (an image built by ``deploy/image-check.sh``, say ``hhh-gateway:slim``) a third
target joins: two gateway containers of that image (``--network host``, on 127.0.0.1, on the same stub and
Redis, configured by the environment and a mounted YAML), the clients split between them as a load
balancer would. Their memory is ``docker stats``'. Needs a running Docker daemon; without the option,
Docker is never called.

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
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import httpx
import yaml

from gateway.relay.embedded_llm import free_port
from tests.support.redis_server import redis_server
from tests.support.servers import wait_until_up

RESULTS = Path(__file__).resolve().parent / "results" / "workers_throughput.md"
CONTAINERS: list[str] = []  # the names of the containers started by --containers
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


async def _cell(urls: list[str], concurrency: int, seconds: float) -> tuple[int, int]:
    """``concurrency`` clients for ``seconds``; with several URLs (two containers) client i uses URL
    i mod n, as a round-robin load balancer in front of them would."""
    ok = failed = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency * 2)

    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60, limits=limits))
            for url in urls
        ]

        async def one_client(client: httpx.AsyncClient) -> None:
            nonlocal ok, failed
            while time.monotonic() < deadline:
                response = await client.post("/chat/completions", json=BODY)
                if response.status_code == 200 and "A short answer." in response.text:
                    ok += 1
                else:
                    failed += 1

        await asyncio.gather(*(one_client(clients[i % len(clients)]) for i in range(concurrency)))
    return ok, failed


def _start_containers(
    image: str, stack: ExitStack, directory: Path, redis_url: str, stub_port: int
) -> list[str]:
    """Two gateway containers on the host's network, as deploy/replicas-check.sh runs them; removed when
    ``stack`` closes. Returns their /v1 URLs, once both answer /health."""
    config = directory / "container.yaml"
    config.write_text("{}\n")  # the defaults, as the processes get: Redis and upstream come by environment
    directory.chmod(0o755)  # the containers run as uid 10001 and must read the mounted file
    config.chmod(0o644)
    urls = []
    for index in range(2):
        port = free_port()
        name = f"hhh-throughput-{os.getpid()}-{index}"
        stack.callback(subprocess.run, ["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(
            ["docker", "run", "-d", "--name", name, "--network", "host",
             "-e", "HHH_CONFIG=/etc/hhh/gateway.yaml", "-e", f"REDIS_URL={redis_url}",
             "-e", f"HHH_UPSTREAM_URL=http://127.0.0.1:{stub_port}/v1",
             "-e", f"HHH_HEALTH_URL=http://127.0.0.1:{port}/health",
             "-v", f"{config}:/etc/hhh/gateway.yaml:ro",
             image, "serve", "--host", "127.0.0.1", "--port", str(port)],
            check=True, capture_output=True,
        )  # fmt: skip
        urls.append(f"http://127.0.0.1:{port}/v1")
        CONTAINERS.append(name)
    for url in urls:
        wait_until_up(url.removesuffix("/v1") + "/health", None, timeout=300)
    return urls


def _container_memory(name: str) -> str:
    stats = ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", name]
    return subprocess.run(stats, capture_output=True, text=True).stdout.split("/")[0].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--containers", metavar="IMAGE", help="also measure two containers of IMAGE")
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
        targets: dict[str, tuple[list[str], subprocess.Popen[bytes] | None]] = {}
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
            targets[name] = ([f"http://127.0.0.1:{port}/v1"], gateway)
        if args.containers:
            urls = _start_containers(args.containers, stack, directory, redis_url, stub_port)
            targets["two containers"] = (urls, None)
        for urls, _ in targets.values():  # warm-up: the first guarded call in each worker loads lazily
            asyncio.run(_cell(urls, args.concurrency, 3))
        results: dict[str, list[tuple[int, int]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (urls, _) in targets.items():
                results[name].append(asyncio.run(_cell(urls, args.concurrency, args.seconds)))
        lines = [
            "# Workers throughput",
            "",
            f"Default guards, fast stub upstream, one Redis; {args.concurrency} concurrent clients, "
            f"{args.rounds} x {args.seconds:g} s per target, alternating; non-streamed chat completions. "
            f"Machine: {os.cpu_count()} cores, shared with other work; "
            "the load generator and the stub run on it too.",
            "",
            "| target | answers/s (per round) | mean answers/s | failed | memory (MiB) |",
            "|---|---|---|---|---|",
        ]
        for name, (_, process) in targets.items():
            rates = [ok / args.seconds for ok, _ in results[name]]
            failed = sum(f for _, f in results[name])
            if process is None:  # the containers: what docker stats says each uses
                rss_text = " + ".join(_container_memory(c) for c in CONTAINERS) + " (docker stats)"
            else:
                pids = _children(process.pid) if name != "one process" else [process.pid]
                rss = [_rss_mib(pid) for pid in pids if _rss_mib(pid) > 100]  # workers, not small helpers
                rss_text = " + ".join(f"{value:.0f}" for value in rss)
                if name != "one process":
                    rss_text += f" (supervisor {_rss_mib(process.pid):.0f})"
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
