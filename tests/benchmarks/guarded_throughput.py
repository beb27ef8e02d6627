"""How many answers the default guards let through per gateway CPU-second: the gateway with the default
guards (BiLSTM toxicity + presidio PII, ``buffer`` mode) against the gateway with no guards, in one run,
under concurrent load.

    python -m tests.benchmarks.guarded_throughput [--concurrency 16 64] [--seconds 8]
        [--baseline REV] [--modes stream whole] [--token-delay-ms 0] [--stagger S] [--think S]
        [--history N] [--out FILE]

Each cell runs ``--concurrency`` clients for ``--seconds`` (each client finishes the answer it is
reading, so a cell lasts at least one answer), against a stub upstream (``fast_stub.py``, its own
process) that answers 300 words: streamed a word a chunk, or whole for a non-stream request. Recording
is off. The gateway's CPU (its process and its children: presidio runs in one of its own) is read from
``/proc`` before and after each cell, so "CPU per answer" and "guarded words per CPU-second" count the
gateway alone, not the load generator or the stub that share the machine. ``--baseline REV`` adds that
commit's guarded gateway (from a temporary worktree, as in ``proxy_overhead``), so a change is measured
against what it replaces in the same run; targets take turns in each cell. Every answer is checked: it
must arrive whole and unchanged (the stub's text passes the guards). ``--stagger S`` starts each client
after a random pause of up to S seconds (the same pauses for every gateway), so requests arrive spread
out as real users' do, instead of all at once and in lock step. For a guarded gateway the table also
gives the mean time one guard took to judge a request's input and one window of its output (the slowest
guard's, from the gateway's own ``hhh_guard_latency_seconds``). Every request asks a question of its
own; ``--think S`` makes each client pause S seconds after each answer, as a reader does, so every
gateway gets the same rate of requests and time to first token compares service, not queues of different
lengths. ``--history N`` makes each client resend N earlier messages of its conversation with every
question, as chat clients do, and adds the guarded gateway without its verdict cache
(``guards.verdict_cache``). The table goes to
``tests/benchmarks/results/guarded_throughput.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from gateway.relay.embedded_llm import free_port
from tests.benchmarks.fast_stub import LONG_ANSWER, LONG_WORDS
from tests.benchmarks.proxy_overhead import (
    ROOT,
    Baseline,
    _exit_on_sigterm,
    command_line,
    current_tree,
    expect_package_from,
    machine,
    process,
    resolve,
    worktree,
)
from tests.support.processes import cpu_seconds
from tests.support.servers import wait_until_up

RESULTS = Path(__file__).resolve().parent / "results" / "guarded_throughput.md"
# Every request asks its own question (a repeated one would be judged once, see guards.verdict_cache).
QUESTION = "Tell me about the town, question {client}-{turn}."


def conversation(client: int, turn: int, history: int) -> list[dict[str, str]]:
    """A client's messages for one request: ``history`` earlier messages of its own conversation (the
    same every turn, as a chat client resends them), then a new question."""
    earlier = [
        {"role": "user", "content": f"An earlier question {client}-{i} about the harbour and its boats."}
        if i % 2 == 0
        else {"role": "assistant", "content": f"An earlier answer {client}-{i} about the old harbour."}
        for i in range(history)
    ]
    return [*earlier, {"role": "user", "content": QUESTION.format(client=client, turn=turn)}]


@dataclass
class Gateway:
    name: str
    url: str
    pid: int


@dataclass
class Cell:
    target: str
    mode: str
    concurrency: int
    answers: int
    errors: Counter[str]  # HTTP errors, by status, error code and message (or exception)
    withheld: int  # answers cut, changed or refused (a guard time-out fails closed under overload)
    seconds: float
    cpu_s: float
    ttft_ms: list[float]
    total_ms: list[float]
    checks_ms: dict[str, float]  # stage -> the slowest guard's mean check time in the cell

    @property
    def answers_per_s(self) -> float:
        return self.answers / self.seconds

    @property
    def cpu_ms_per_answer(self) -> float:
        return self.cpu_s * 1000 / max(1, self.answers)

    @property
    def words_per_cpu_s(self) -> float:
        return self.answers * len(LONG_WORDS) / self.cpu_s if self.cpu_s else 0.0


_LATENCY = re.compile(r'^hhh_guard_latency_seconds_(sum|count)\{guard="([^"]+)",stage="([^"]+)"\} (\S+)$')


def guard_latency(url: str) -> dict[tuple[str, str], list[float]]:
    """(guard, stage) -> [seconds, checks] so far, from the gateway's ``/metrics``."""
    metrics = httpx.get(url.replace("/v1/chat/completions", "/metrics"), timeout=30).text
    totals: dict[tuple[str, str], list[float]] = {}
    for line in metrics.splitlines():
        if (match := _LATENCY.match(line)) is not None:
            kind, guard, stage, value = match.groups()
            totals.setdefault((guard, stage), [0.0, 0.0])[kind == "count"] = float(value)
    return totals


Latencies = dict[tuple[str, str], list[float]]


def mean_checks(before: Latencies, after: Latencies) -> dict[str, float]:
    """stage -> the slowest guard's mean check time (ms) between two readings."""
    slowest: dict[str, float] = {}
    for (guard, stage), (seconds, count) in after.items():
        was = before.get((guard, stage), [0.0, 0.0])
        if count > was[1]:
            mean = (seconds - was[0]) * 1000 / (count - was[1])
            slowest[stage] = max(slowest.get(stage, 0.0), mean)
    return slowest


def start_stub(stack: ExitStack, logs: Path, token_delay_ms: float = 0.0) -> str:
    port = free_port()
    command = [sys.executable, "-m", "tests.benchmarks.fast_stub", "--port", str(port)]
    command += ["--token-delay-ms", str(token_delay_ms)]
    proc = stack.enter_context(process(command, logs / "stub.log"))
    wait_until_up(f"http://127.0.0.1:{port}/v1/models", proc)
    return f"http://127.0.0.1:{port}/v1"


def start_gateway(
    stack: ExitStack,
    logs: Path,
    stub: str,
    guarded: bool,
    baseline: Baseline | None = None,
    cache: bool = True,
) -> Gateway:
    port = free_port()
    config = logs / f"gateway-{port}.yaml"
    lines = [f"data_dir: {logs / f'data-{port}'}", f"upstreams: [{{name: stub, url: '{stub}'}}]"]
    lines += ["feedback: {record: false}"] + ([] if guarded else ["policies: {default: {}}"])
    lines += [] if cache else ["verdict_cache: {entries: 0}"]
    config.write_text("\n".join(lines) + "\n")
    env = dict(os.environ)
    env.pop("HHH_UPSTREAM_URL", None)
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
    command += ["--log-level", "warning"]
    name = ("default guards" if guarded else "no guards") + ("" if cache else ", no verdict cache")
    cwd = ROOT
    if baseline is not None:
        tree = stack.enter_context(worktree(baseline))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
        expect_package_from(tree, env)
        name, cwd = f"default guards @{baseline.short}", tree
    log = logs / f"gateway-{port}.log"
    proc = stack.enter_context(process(command, log, env, cwd))
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", proc, timeout=180)
    except RuntimeError as error:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{name} did not start ({error}); the end of its log:\n{tail}") from error
    return Gateway(name, f"http://127.0.0.1:{port}/v1/chat/completions", proc.pid)


class AnswerError(Exception):
    """An HTTP error answer, named by status, error code and (for a guard) which guard failed."""


def raise_for_status(response: httpx.Response) -> None:
    if not response.is_error:
        return
    kind = str(response.status_code)
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    if error.get("code"):
        kind += f" {error['code']}"
    if error.get("message"):
        kind += f" ({str(error['message'])[:80]})"
    raise AnswerError(kind)


async def one_answer(
    client: httpx.AsyncClient, url: str, stream: bool, messages: list[dict[str, str]]
) -> tuple[float, float, str]:
    """(time to first text, total time, the text) of one answer, in seconds."""
    body = {"model": "stub-long", "messages": messages, "stream": stream}
    started = time.perf_counter()
    if not stream:
        response = await client.post(url, json=body)
        raise_for_status(response)
        text = response.json()["choices"][0]["message"]["content"] or ""
        elapsed = time.perf_counter() - started
        return elapsed, elapsed, text
    first = 0.0
    parts: list[str] = []
    async with client.stream("POST", url, json=body) as response:
        if response.is_error:
            await response.aread()  # the error body says which guard failed
        raise_for_status(response)
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            for choice in msgspec.json.decode(line[6:]).get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    first = first or time.perf_counter() - started
                    parts.append(content)
    return first, time.perf_counter() - started, "".join(parts)


async def measure(
    gateway: Gateway,
    mode: str,
    concurrency: int,
    seconds: float,
    stagger: float = 0.0,
    history: int = 0,
    think: float = 0.0,
) -> Cell:
    stream = mode == "stream"
    pauses = random.Random(concurrency).sample(range(1000), concurrency)  # the same for every gateway
    ttft: list[float] = []
    total: list[float] = []
    errors: Counter[str] = Counter()
    withheld = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        warm = [conversation(-1 - i, 0, history) for i in range(min(4, concurrency))]
        await asyncio.gather(*(one_answer(client, gateway.url, stream, messages) for messages in warm))
        deadline = time.perf_counter() + seconds
        turns = Counter[int]()

        async def worker(index: int, pause: float) -> None:
            nonlocal withheld
            await asyncio.sleep(pause)
            while time.perf_counter() < deadline:
                turns[index] += 1
                messages = conversation(index, turns[index], history)
                try:
                    first, whole, text = await one_answer(client, gateway.url, stream, messages)
                except AnswerError as error:
                    errors[str(error)] += 1
                    continue
                except httpx.HTTPError as error:
                    errors[type(error).__name__] += 1
                    continue
                if text != LONG_ANSWER:
                    withheld += 1  # cut, changed or refused: not an answer that counts
                    continue
                ttft.append(first * 1000)
                total.append(whole * 1000)
                await asyncio.sleep(think)  # a reader between questions: the same pace for every gateway

        checks_before = guard_latency(gateway.url)
        cpu_before, started = cpu_seconds(gateway.pid), time.perf_counter()
        await asyncio.gather(*(worker(index, stagger * p / 1000) for index, p in enumerate(pauses)))
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(gateway.pid) - cpu_before
        checks = mean_checks(checks_before, guard_latency(gateway.url))
    return Cell(
        gateway.name, mode, concurrency, len(total), errors, withheld, elapsed, cpu, ttft, total, checks
    )


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else (values or [0.0])[0]


def row(cell: Cell) -> str:
    ttft = f"{statistics.median(cell.ttft_ms):.0f} | {p99(cell.ttft_ms):.0f}" if cell.ttft_ms else "- | -"
    median_total = f"{statistics.median(cell.total_ms):.0f}" if cell.total_ms else "-"
    checks = " | ".join(
        f"{cell.checks_ms[stage]:.1f}" if stage in cell.checks_ms else "-" for stage in ("input", "output")
    )
    return (
        f"| {cell.mode} | {cell.concurrency} | {cell.target} | {cell.answers_per_s:.1f} | "
        f"{cell.cpu_ms_per_answer:.0f} | {cell.words_per_cpu_s:,.0f} | {ttft} | {median_total} | "
        f"{checks} | {cell.answers} | {cell.withheld} | {_errors(cell.errors)} |"
    )


def _errors(errors: Counter[str]) -> str:
    total = sum(errors.values())
    return f"{total} ({', '.join(f'{kind}: {n}' for kind, n in errors.most_common())})" if total else "0"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=float, default=8.0, help="how long each cell starts new answers")
    parser.add_argument("--modes", nargs="+", choices=["stream", "whole"], default=["stream", "whole"])
    parser.add_argument("--baseline", action="append", default=[], metavar="REV")
    parser.add_argument(
        "--token-delay-ms",
        type=float,
        default=0.0,
        help="the stub's pause between streamed words: 0 is an instant upstream; about 13 is an LLM's "
        "75 words/s, where time to first token shows what the guards add to it",
    )
    parser.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        help="start each client after a random pause of up to this many seconds (0: all at once)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="earlier messages each client resends with every question (a chat's history); when set, the "
        "guarded gateway without its verdict cache runs too",
    )
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        metavar="S",
        help="each client pauses S seconds after each answer (the same request rate for every gateway)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the table goes")
    args = parser.parse_args()
    baselines = list({b.sha: b for b in map(resolve, args.baseline)}.values())
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # a killed run still stops its processes
    rows: list[str] = []
    failed = False
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="hhh-throughput-") as scratch:
        logs = Path(scratch)
        stub = start_stub(stack, logs, args.token_delay_ms)
        gateways = [start_gateway(stack, logs, stub, guarded=False), start_gateway(stack, logs, stub, True)]
        if args.history:
            gateways.append(start_gateway(stack, logs, stub, True, cache=False))
        gateways += [start_gateway(stack, logs, stub, True, baseline) for baseline in baselines]
        for mode in args.modes:
            for concurrency in args.concurrency:
                for gateway in gateways:
                    cell = asyncio.run(
                        measure(
                            gateway, mode, concurrency, args.seconds, args.stagger, args.history, args.think
                        )
                    )
                    rows.append(row(cell))
                    print(rows[-1], flush=True)
                    failed = failed or bool(cell.errors) or bool(cell.withheld)
        if failed:  # the gateways' logs say why; the scratch directory goes with the run
            kept = Path(tempfile.mkdtemp(prefix="hhh-throughput-logs-"))
            for log in logs.glob("*.log"):
                shutil.copy(log, kept)
            print(f"errors or withheld answers: the logs are in {kept}", flush=True)
    against = "".join(
        f"; `@{b.short}` is the guarded gateway of {b.sha[:10]} ({b.subject})" for b in baselines
    )
    report = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} UTC on {machine()} (shared with other work), with "
        f"`{command_line()}`; current is {current_tree()}{against}. A {len(LONG_WORDS)}-word answer "
        "from a stub upstream, streamed a word a chunk (`stream`"
        + (f", {args.token_delay_ms:g} ms between words" if args.token_delay_ms else "")
        + ") or whole (`whole`); recording off; "
        + (f"clients start spread over {args.stagger:g} s; " if args.stagger else "")
        + (f"each client pauses {args.think:g} s after each answer; " if args.think else "")
        + (
            f"each request resends {args.history} earlier messages of its client's conversation; "
            if args.history
            else ""
        )
        + f"each cell starts answers for {args.seconds:g} s. "
        "CPU is the gateway's own (user + system, all threads, its child processes included). "
        "TTFT is the time to the first text of the answer (for `whole`, the whole answer). 'Withheld': "
        "answers that did not arrive whole (a guard that times out fails closed); 'errors': HTTP errors. "
        "Input / window check: the slowest guard's mean time to judge a request's input / one window.\n\n"
        "| mode | concurrency | gateway | answers/s | gateway CPU ms per answer | words per CPU-second | "
        "median TTFT ms | p99 TTFT ms | median total ms | input check ms | window check ms | answers | "
        "withheld | errors |\n"
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    args.out.write_text(report)
    print("\n" + report)


if __name__ == "__main__":
    main()
