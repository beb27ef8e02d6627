"""The prompt-injection model's latency per text on the CPU: the shipped NanoGuard run with dynamic
padding (each batch padded to its longest window, attention masked: the gateway's default) side by side
with the package's own padding to 512 tokens, in interleaved rounds of the same run, for a short prompt,
a paragraph, and a batch of 8 short prompts (what the runner gives the model under load).

    python -m tests.benchmarks.injection_latency [--runs 5]

The table goes to ``tests/benchmarks/results/injection_latency.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from guards.models.nanoguard_model import load_nanoguard
from tests.benchmarks.proxy_overhead import command_line, machine

RESULTS = Path(__file__).resolve().parent / "results" / "injection_latency.md"
SHORT = "How do I ignore whitespace changes in git diff?"
PARAGRAPH = (
    "Our refund policy allows returns within 30 days of delivery for unused items in their original "
    "packaging. Sale items are final. To start a return, open the order page, choose the item, and print "
    "the prepaid label; refunds reach the original payment method within five working days. "
) * 2
CASES: dict[str, list[str]] = {
    "1 short prompt (~12 tokens)": [SHORT],
    "1 paragraph (~120 tokens)": [PARAGRAPH],
    "8 short prompts, one batch": [SHORT] * 8,
}


def _time(predict: Callable[[list[str]], list[float]], texts: list[str]) -> float:
    started = time.perf_counter()
    predict(texts)
    return (time.perf_counter() - started) * 1000 / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    models = {
        "dynamic (64-token windows)": load_nanoguard("cpu", "fp32", "dynamic", 64, 32).predict,
        "padded to 512 (as shipped)": load_nanoguard("cpu", "fp32", "shipped", 512, 64).predict,
    }
    rows = []
    for case, texts in CASES.items():
        samples: dict[str, list[float]] = {name: [] for name in models}
        for predict in models.values():
            predict(texts)  # warm-up
        for _ in range(args.runs):
            for name, predict in models.items():  # interleaved: both see the same machine
                samples[name].append(_time(predict, texts))
        rows.append((case, {name: statistics.median(values) for name, values in samples.items()}))
    lines = [
        "# Prompt-injection model latency per text (CPU, fp32)",
        "",
        f"`{command_line()}` on {machine()}; median of {args.runs} interleaved rounds, ms per text.",
        "",
        "| case | " + " | ".join(models) + " |",
        "|---" * (len(models) + 1) + "|",
    ]
    lines += [
        f"| {case} | " + " | ".join(f"{ms:.1f}" for ms in medians.values()) + " |" for case, medians in rows
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
