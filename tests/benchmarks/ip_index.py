"""The IP guard's index: check time for a 1,000-token answer against corpora of 1 MB and 100 MB (and a
projection to 10 GB), index build throughput, and index memory per MB of corpus.

    python -m tests.benchmarks.ip_index [--sizes-mb 1 100] [--runs 200]

The corpora are synthetic prose (random words from a 20,000-word vocabulary with a Zipf-like
distribution, in 100 KB documents): fingerprints and lookups cost the same for real text of the same
size. The answer is 750 words (about 1,000 tokens) with one 60-word copy from the corpus inside.
The baseline, in the same run, is the naive n-gram set: every 4-word shingle of the corpus hashed into
a Python set (no winnowing), and every shingle of the answer looked up in it. It finds the same
copy; the table shows what winnowing saves in memory and what the sorted-array lookups cost against
a hash set.
The table goes to ``tests/benchmarks/results/ip_index.md``.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from guards.ip.index import Document, FingerprintIndex
from guards.ip.matching import find_copies
from tests.benchmarks.proxy_overhead import command_line, machine

RESULTS = Path(__file__).resolve().parent / "results" / "ip_index.md"
DOCUMENT_BYTES = 100_000


def _vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(20_000)]


def _prose(rng: random.Random, vocabulary: list[str], size: int) -> str:
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    words: list[str] = []
    length = 0
    while length < size:
        batch = rng.choices(vocabulary, weights, k=2000)
        words += batch
        length += sum(len(w) + 1 for w in batch)
    return " ".join(words)[:size]


def _documents(rng: random.Random, vocabulary: list[str], total: int) -> Iterator[tuple[Document, str]]:
    for number in range(max(1, total // DOCUMENT_BYTES)):
        yield Document(f"doc-{number}", title=f"Document {number}"), _prose(rng, vocabulary, DOCUMENT_BYTES)


def _shingles(text: str, k: int = 4) -> list[int]:
    words = text.lower().split()
    return [hash(" ".join(words[i : i + k])) for i in range(len(words) - k + 1)]


def measure_naive(documents: list[tuple[Document, str]], answer: str, runs: int) -> tuple[float, float]:
    """The baseline: check ms (median) and memory (MB) of a set of every corpus shingle's hash."""
    table: set[int] = set()
    for _, text in documents:
        table.update(_shingles(text))
    assert sum(h in table for h in _shingles(answer)) >= 50, "the naive set must find the copy too"
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        hits = [h in table for h in _shingles(answer)]
        times.append(time.perf_counter() - started)
    del hits
    # The set's own table plus one int object (32 bytes) per distinct hash.
    memory_mb = (sys.getsizeof(table) + 32 * len(table)) / 1e6
    return statistics.median(times) * 1000, memory_mb


def measure(size_mb: int, runs: int) -> tuple[float, float, float, float, float, float]:
    rng = random.Random(size_mb)
    vocabulary = _vocabulary(rng)
    documents = list(_documents(rng, vocabulary, size_mb * 1_000_000))
    index = FingerprintIndex()
    started = time.perf_counter()
    index.add(documents)
    build_s = time.perf_counter() - started
    copied = " ".join(documents[len(documents) // 2][1].split()[1000:1060])
    answer_words = _prose(rng, vocabulary, 5000).split()[:690]
    answer = " ".join(answer_words[:300]) + " " + copied + " " + " ".join(answer_words[300:])
    assert find_copies(answer, index, 60), "the planted copy must be found"
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        find_copies(answer, index, 60)
        times.append(time.perf_counter() - started)
    corpus_mb = sum(len(text) for _, text in documents) / 1e6
    naive_ms, naive_mb = measure_naive(documents, answer, runs)
    check_ms = statistics.median(times) * 1000
    return (
        check_ms,
        corpus_mb / build_s,
        index.nbytes / 1e6 / corpus_mb,
        corpus_mb,
        naive_ms,
        naive_mb / corpus_mb,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    rows = []
    results = {}
    for size in args.sizes_mb:
        check_ms, build_rate, memory_ratio, corpus_mb, naive_ms, naive_ratio = measure(size, args.runs)
        results[size] = check_ms
        rows.append(
            f"| {corpus_mb:,.0f} MB | {check_ms:.2f} ms | {naive_ms:.2f} ms | {build_rate:.1f} MB/s "
            f"| {memory_ratio:.2f} MB per MB | {naive_ratio:.2f} MB per MB |"
        )
        print(rows[-1], flush=True)
    if len(results) >= 2:
        small, large = min(results), max(results)
        # Lookups are binary searches: cost grows with log(size). Fit a + b*log(size) to the two ends.
        slope = (results[large] - results[small]) / math.log(large / small)
        projected = results[large] + slope * math.log(10_000 / large)
        rows.append(f"| 10,000 MB (projected) | {projected:.2f} ms | | | about the same ratio | |")
    report = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()} with `{command_line()}`; one 750-word "
        f"(about 1,000-token) answer holding a 60-word copy, median of {args.runs} checks; synthetic prose "
        "in 100 KB documents; shingles of 4 words, winnowing window 6. Baseline: a Python set of every "
        "shingle's hash (no winnowing), built and checked in the same run.\n\n"
        "| corpus | check per 1,000-token answer | baseline check | index build | index memory "
        "| baseline memory |\n|---|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    RESULTS.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
