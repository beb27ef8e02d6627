"""The embedded toxicity models on the CPU: the BiLSTM (the default) against the classic tier (the
baseline it replaced), in the same run, on the suite's 240 labelled texts.

    python -m tests.benchmarks.toxicity_models [--threads 1] [--concurrency 64]

- latency per text: one ``predict([text])`` call at a time (median and p95 over the texts), plus a
  400-word text (the BiLSTM scores it in overlapping windows);
- batched throughput: every text sent as its own concurrent request (``--concurrency`` at a time)
  through the ``BatchingRunner``, against one ``predict`` call per request in a worker thread.
``--threads`` is torch's thread count (the gateway's ``server.model_threads``: half the cores by
default, one on a 2-core machine). The table goes to stdout and to ``results/toxicity_models.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guards.models.bilstm_toxicity import BiLstmConfig, BiLstmToxicity
from guards.models.classic_toxicity import classic_predict
from guards.runner import BatchingRunner

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results" / "toxicity_models.md"
LONG = " ".join(["thanks for the careful review of the migration plan, it reads well"] * 34)  # ~400 words


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(predict: Callable[[list[str]], Any], texts: list[str]) -> tuple[float, float, float]:
    predict(texts[:2])  # warm
    times = []
    for text in texts:
        started = time.perf_counter()
        predict([text])
        times.append((time.perf_counter() - started) * 1000)
    long_times = []
    for _ in range(5):
        started = time.perf_counter()
        predict([LONG])
        long_times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), _percentile(times, 0.95), statistics.median(long_times)


async def throughput(
    name: str, predict: Callable[[list[str]], Any], texts: list[str], concurrency: int
) -> tuple[float, float]:
    """Texts per second: naive (a thread per request) and through the runner."""
    gate = asyncio.Semaphore(concurrency)

    async def drive(call: Callable[[str], Any]) -> float:
        async def one(text: str) -> None:
            async with gate:
                await call(text)

        started = time.perf_counter()
        await asyncio.gather(*(one(text) for text in texts))
        return len(texts) / (time.perf_counter() - started)

    naive = await drive(lambda text: asyncio.to_thread(predict, [text]))
    runner = BatchingRunner(name, predict, max_batch=64, max_wait_ms=1.0)
    await runner.start()
    try:
        batched = await drive(runner.run_one)
    finally:
        await runner.close()
    return naive, batched


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="texts are the labelled set repeated")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    labelled = ROOT / "tests" / "data" / "toxicity_labelled.jsonl"
    texts = [json.loads(line)["text"] for line in labelled.read_text().splitlines()]
    started = time.perf_counter()
    bilstm = BiLstmToxicity(BiLstmConfig(device="cpu"))
    load_s = time.perf_counter() - started
    models: dict[str, Callable[[list[str]], Any]] = {"classic (before)": classic_predict}
    models["bilstm (default)"] = bilstm.predict
    lines = [
        f"# Toxicity models on the CPU ({platform.processor() or platform.machine()}, "
        f"{args.threads} torch thread(s), concurrency {args.concurrency})",
        "",
        f"{len(texts)} labelled texts (tests/data/toxicity_labelled.jsonl, 6-20 words), each sent as its own "
        f"request, {args.rounds} rounds; the BiLSTM loaded in {load_s:.1f} s.",
        "",
        "| model | latency p50 (ms) | p95 (ms) | 400-word text (ms) | naive texts/s | runner texts/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, predict in models.items():
        p50, p95, long = latency(predict, texts)
        naive, batched = asyncio.run(throughput(name, predict, texts * args.rounds, args.concurrency))
        lines.append(f"| {name} | {p50:.2f} | {p95:.2f} | {long:.2f} | {naive:.0f} | {batched:.0f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    RESULTS.write_text(report)


if __name__ == "__main__":
    main()
