"""The BiLSTM's padding shortcut: ``predict`` (the forward direction's padding steps read from a
table) against ``predict_reference`` (every window padded to 100 ids and run in full), in the same
process, on one torch thread.

    python -m tests.benchmarks.bilstm_padding [--threads 1] [--seconds 0.5]

Windows are runs of known words cut from the 240 labelled texts, so every word is one id: sentence
sized (20 ids), full (100 ids, no padding to skip), and a batch of mixed lengths (1-100 ids). Each
cell times both paths alternately, call by call, and reports the median call; the largest score
difference between the two paths over the cell's texts is reported too. The table goes to stdout and
to ``results/bilstm_padding.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from guards.models.bilstm_toxicity import BiLstmConfig, BiLstmToxicity

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results" / "bilstm_padding.md"
Predict = Callable[[list[str]], list[dict[str, float]]]


def known_words(model: BiLstmToxicity) -> list[str]:
    """The labelled texts' words the tokenizer knows, in order (each is exactly one id)."""
    labelled = ROOT / "tests" / "data" / "toxicity_labelled.jsonl"
    texts = [json.loads(line)["text"] for line in labelled.read_text().splitlines() if line.strip()]
    index = model.tokenizer.word_index
    return [word for text in texts for word in model.tokenizer.words(text) if word in index]


def cut(words: list[str], sizes: list[int], offset: int) -> list[str]:
    """Texts of ``sizes`` known words each, taken in turn from ``words`` (wrapping round)."""
    texts = []
    for size in sizes:
        texts.append(" ".join(words[(offset + i) % len(words)] for i in range(size)))
        offset += size
    return texts


def median_ms(predict: Predict, other: Predict, texts: list[str], seconds: float) -> tuple[float, float]:
    """Median call of ``predict`` and ``other``, timed alternately so both see the same load."""
    predict(texts)  # warm
    other(texts)
    mine: list[float] = []
    theirs: list[float] = []
    deadline = time.perf_counter() + 2 * seconds
    while len(mine) < 5 or time.perf_counter() < deadline:
        for call, times in ((predict, mine), (other, theirs)):
            started = time.perf_counter()
            call(texts)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(mine), statistics.median(theirs)


def largest_difference(model: BiLstmToxicity, texts: list[str]) -> float:
    fast, reference = model.predict(texts), model.predict_reference(texts)
    return max(abs(a[key] - b[key]) for a, b in zip(fast, reference, strict=True) for key in a)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0.5, help="timing per path and cell")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    model = BiLstmToxicity(BiLstmConfig(device="cpu"))
    words = known_words(model)
    rng = random.Random(0)
    cells: list[tuple[str, int, list[str]]] = []
    for ids in (20, 100):
        for batch in (1, 4, 16, 64):
            cells.append((f"{ids} ids", batch, cut(words, [ids] * batch, rng.randrange(len(words)))))
    mixed = [rng.randint(1, 100) for _ in range(64)]
    cells.append(("mixed 1-100 ids", 64, cut(words, mixed, rng.randrange(len(words)))))
    lines = [
        f"# BiLSTM padding shortcut ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {args.threads} torch thread(s))",
        "",
        "`predict` (padding shortcut) vs `predict_reference` (every window padded to 100 ids), "
        "same process, timed alternately; median call.",
        "",
        "| windows | batch | reference (ms) | shortcut (ms) | speed-up | largest score difference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, batch, texts in cells:
        fast, reference = median_ms(model.predict, model.predict_reference, texts, args.seconds)
        difference = largest_difference(model, texts)
        lines.append(
            f"| {label} | {batch} | {reference:.2f} | {fast:.2f} | {reference / fast:.2f}x "
            f"| {difference:.1e} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    RESULTS.write_text(report)


if __name__ == "__main__":
    main()
