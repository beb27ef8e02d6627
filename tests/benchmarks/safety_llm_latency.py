"""Latency per check of the ``safety_llm`` guard, side by side with the bare HTTP call it makes, in
interleaved rounds of the same run:

- against the scripted classifier (``tests/support/scripted_safety_llm``, its own process): what the
  guard adds to a call (building the request, reading the answer, the semaphore), sequential checks,
  and checks per second with 64 concurrent judgements at ``max_concurrency`` 8 and 64;
- against llama.cpp with the tiny SmolLM2 model (not a safety model: its answers are malformed, which
  is timed all the same; the figure is the cost of a model call on this machine, not a safety model's).

    python -m tests.benchmarks.safety_llm_latency [--checks 200] [--llama-checks 4]

The table goes to ``tests/benchmarks/results/safety_llm_latency.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from gateway.relay.embedded_llm import free_port
from guards.policy import GuardSpec
from guards.registry import GuardResources, build_guards
from guards.runner import RunnerPool
from guards.safety_llm import SafetyLlmError, SafetyLlmGuard
from tests.benchmarks.proxy_overhead import command_line, machine
from tests.support.servers import LLAMA_ALIAS, llama_server, stop, wait_until_up

RESULTS = Path(__file__).resolve().parent / "results" / "safety_llm_latency.md"
TEXT = "How do I repot a fern without hurting its roots?"
# For the bare call next to llama.cpp: llama.cpp reuses the previous call's prompt prefix, so the same
# text twice in a row would time a cache hit, not a check.
OTHER_TEXT = "How do I prune a maple without hurting its bark?"


def make_guard(url: str, model: str, **config: Any) -> SafetyLlmGuard:
    spec = GuardSpec(type="safety_llm", config={"base_url": url, "model": model, **config})
    guard = build_guards({"safety": spec}, GuardResources(RunnerPool(), None, Path(".")))["safety"]
    assert isinstance(guard, SafetyLlmGuard)
    return guard


async def check(guard: SafetyLlmGuard) -> None:
    with contextlib.suppress(SafetyLlmError):  # the tiny model's malformed answers: called and read
        await guard.judge([TEXT], guard.default_thresholds)


def direct(
    client: httpx.AsyncClient, model: str, max_tokens: int, text: str = TEXT
) -> Callable[[], Awaitable[None]]:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
            "temperature": 0.0}  # fmt: skip

    async def call() -> None:
        (await client.post("chat/completions", json=body)).raise_for_status()

    return call


async def timed(call: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def sequential(targets: dict[str, Callable[[], Awaitable[None]]], runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in targets}
    for call in targets.values():
        await call()  # warm-up
    for _ in range(runs):
        for name, call in targets.items():  # interleaved: each sees the same machine
            samples[name].append(await timed(call))
    return samples


async def throughput(guard: SafetyLlmGuard, concurrent: int, total: int) -> float:
    started = time.perf_counter()
    queue = iter(range(total))

    async def worker() -> None:
        for _ in queue:
            await check(guard)

    await asyncio.gather(*(worker() for _ in range(concurrent)))
    return total / (time.perf_counter() - started)


def row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"| {name} | {len(values)} | {statistics.median(values):.2f} | {p95:.2f} |"


async def scripted_rows(url: str, checks: int) -> list[str]:
    guard = make_guard(url, "llama-guard", logprobs=True)
    await guard.start()
    async with httpx.AsyncClient(base_url=url + "/") as client:
        samples = await sequential({"guard check (llama_guard, logprobs)": lambda: check(guard),
                                    "bare HTTP call": direct(client, "llama-guard", 20)}, checks)  # fmt: skip
    lines = [row(f"scripted: {name}", values) for name, values in samples.items()]
    await guard.close()
    for limit in (8, 64):
        wide = make_guard(url, "llama-guard", max_concurrency=limit)
        await wide.start()
        await throughput(wide, 64, 64)  # warm-up: connections opened
        rate = await throughput(wide, 64, checks * 4)
        lines.append(f"| scripted: 64 concurrent judgements, max_concurrency {limit} | {checks * 4} | "
                     f"{rate:.0f} checks/s | |")  # fmt: skip
        await wide.close()
    return lines


async def llama_rows(url: str, checks: int) -> list[str]:
    llama = make_guard(url, LLAMA_ALIAS, max_tokens=4, timeout_ms=300_000)
    gemma = make_guard(url, LLAMA_ALIAS, template="shieldgemma", policies=["harassment"], timeout_ms=300_000)
    await llama.start()
    await gemma.start()
    async with httpx.AsyncClient(base_url=url + "/", timeout=300) as client:
        samples = await sequential(
            {
                "guard check (llama_guard, chat, 4 tokens)": lambda: check(llama),
                "guard check (shieldgemma, completions, 1 policy, 3 tokens)": lambda: check(gemma),
                "bare chat call, 4 tokens": direct(client, LLAMA_ALIAS, 4, OTHER_TEXT),
            },
            checks,
        )
    await llama.close()
    await gemma.close()
    return [row(f"llama.cpp SmolLM2-135M: {name}", values) for name, values in samples.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--llama-checks", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    command = [sys.executable, "-m", "tests.support.scripted_safety_llm", str(port)]
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        wait_until_up(f"{url}/models", server)
        lines = asyncio.run(scripted_rows(url, args.checks))
    finally:
        stop(server)
    if args.llama_checks:
        with tempfile.TemporaryDirectory() as logs, llama_server(Path(logs)) as llama_url:
            lines += asyncio.run(llama_rows(llama_url, args.llama_checks))
    table = [
        "# safety_llm latency per check",
        "",
        f"`{command_line()}` on {machine()}; the machine is shared and busy. Interleaved rounds; "
        "ms per check (median, p95) or checks per second.",
        "",
        "| what | checks | median ms | p95 ms |",
        "|---|---|---|---|",
        *lines,
    ]
    RESULTS.write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
