"""The batching runner against one ``predict`` call per request, on a detoxify-format BERT-base
checkpoint (random weights, real size: 110M parameters), with concurrent requests of about 100 tokens.

    python -m tests.benchmarks.runner_batching [--requests 256] [--concurrency 64] [--device auto]

Both sides run the same model object on the same device, in the same process and run:
- naive: each request calls ``predict([text])`` in a worker thread (``asyncio.to_thread``), as a
  straightforward async service would;
- runner: each request awaits ``BatchingRunner.run([text])``; concurrent requests share a batch.
``--device cuda`` (or ``auto`` on a machine with a GPU) takes the GPU path: CUDA, half precision.
The table goes to stdout and to ``tests/benchmarks/results/runner_batching.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from pathlib import Path

from guards.models.detoxify_model import DetoxifyConfig, LoadedDetoxify, load_detoxify
from guards.runner import BatchingRunner
from tests.support.detoxify_checkpoints import build_checkpoint

RESULTS = Path(__file__).resolve().parent / "results" / "runner_batching.md"
# About 100 BERT tokens.
TEXT = (
    "I read the whole thread and honestly I think you are missing the point entirely, because the "
    "question was never about the budget, it was about whether the team had been told the truth "
    "about the delays, and nobody here has answered that yet, so please stop changing the subject "
    "and answer it plainly, without the sarcasm, for once in this discussion."
)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _drive(call: object, requests: int, concurrency: int) -> tuple[float, list[float]]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            await call(f"{TEXT} ({i})")  # type: ignore[operator]
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    return time.perf_counter() - started, latencies


async def measure(
    models: dict[str, LoadedDetoxify], requests: int, concurrency: int, max_batch: int
) -> list[tuple[str, float, float, float]]:
    rows = []
    for precision, model in models.items():

        async def naive(text: str, model: LoadedDetoxify = model) -> None:
            await asyncio.to_thread(model.predict, [text])

        runner = BatchingRunner("bench", model.predict, max_batch=max_batch, max_wait_ms=2.0)
        await runner.start()
        try:
            for name, call in (
                (f"naive, {precision}", naive),
                (f"batching runner, {precision}", runner.run_one),
            ):
                await _drive(call, min(requests, 2 * concurrency), concurrency)  # warm-up
                elapsed, latencies = await _drive(call, requests, concurrency)
                row = (
                    name,
                    requests / elapsed,
                    statistics.median(latencies) * 1000,
                    _percentile(latencies, 0.99) * 1000,
                )
                rows.append(row)
                print(
                    f"{name:28} {row[1]:7.1f} texts/s  p50 {row[2]:8.0f} ms  p99 {row[3]:8.0f} ms", flush=True
                )
        finally:
            await runner.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args()

    import torch

    models: dict[str, LoadedDetoxify] = {}
    with tempfile.TemporaryDirectory(prefix="hhh-bert-base-") as scratch:
        print("building a BERT-base checkpoint in detoxify's format (random weights)...", flush=True)
        checkpoint, config_dir = build_checkpoint(Path(scratch), "original", size="base")
        for precision in ("fp32", "auto"):  # "auto" is the production path: bf16 or fp16 where native
            config = DetoxifyConfig(
                checkpoint=str(checkpoint),
                config_dir=str(config_dir),
                device=args.device,
                precision=precision,
            )
            loaded = load_detoxify(config)
            models[loaded.placement.key] = loaded
    placement = next(iter(models.values())).placement
    device = torch.cuda.get_device_name(0) if placement.device == "cuda" else platform.processor() or "CPU"
    measured = asyncio.run(measure(models, args.requests, args.concurrency, args.max_batch))
    base = measured[0][1]
    rows = [
        f"| {name} | {rate:.1f} | {p50:.0f} | {p99:.0f} | {rate / base:.1f}x |"
        for name, rate, p50, p99 in measured
    ]
    report = (
        f"Measured {time.strftime('%Y-%m-%d')} on {device} ({torch.get_num_threads()} torch threads), "
        f"BERT-base in detoxify's format, {args.requests} requests of about 100 tokens at concurrency "
        f"{args.concurrency}, max batch {args.max_batch}.\n\n"
        "| path | texts/s | p50 ms | p99 ms | vs naive fp32 |\n|---|---:|---:|---:|---:|\n"
        + "\n".join(rows)
        + "\n"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = RESULTS if placement.device == "cpu" else RESULTS.with_name("runner_batching_gpu.md")
    out.write_text(report)
    print("\n" + report)


if __name__ == "__main__":
    main()
