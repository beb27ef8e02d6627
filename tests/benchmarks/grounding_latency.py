"""The grounding guard's latency: a 300-word answer checked against 5 request sources, and against a
verified citation database of 100,000 passages (embedded default scorer, CPU).

    python -m tests.benchmarks.grounding_latency [--passages 100000] [--runs 10]

The database's vectors are random unit vectors except for the passages the answer is about: exact
search costs the same whatever the passages say, and embedding 100,000 real passages would take this
machine several minutes, which the index-build row measures (and projects) on real passages instead.
The baseline, in the same run, is the embedding step alone: the answer's sentences and the sources'
sentences embedded in one call, with nothing else of the guard (claim extraction, search, lexical
checks). What the guard adds on top is its own cost.
The table goes to ``tests/benchmarks/results/grounding_latency.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from guards.grounding.citation_db import CitationIndex, build_index
from guards.grounding.guard import GroundingConfig, GroundingGuard
from guards.grounding.text import sentences
from guards.models.sentence_embeddings import load_embedder
from guards.registry import GuardResources
from guards.runner import RunnerPool
from guards.verdict import JudgeContext, Source
from tests.benchmarks.proxy_overhead import command_line, machine

RESULTS = Path(__file__).resolve().parent / "results" / "grounding_latency.md"
FACTS = [
    "The Vela harbour opened in 1893 and handles 4,000 ships a year.",
    "Its lighthouse was rebuilt in 1954 after a storm destroyed the old tower.",
    "The fish market opens at five in the morning from Tuesday to Saturday.",
    "About 12,000 people live in Vela, most of them in the old town.",
    "The ferry to Orla leaves every 40 minutes in summer and every two hours in winter.",
]
SOURCES = [
    Source(f"src-{i}", " ".join(FACTS[i:] + FACTS[:i]) + " The town council meets monthly.") for i in range(5)
]
# About 300 words: the facts restated, some altered, some invented, in 20 sentences.
ANSWER = " ".join(
    [
        "The Vela harbour opened in 1893 and now handles about 4,000 ships every year.",
        "The lighthouse was rebuilt in 1954 after a storm destroyed the earlier tower.",
        "The fish market opens at five in the morning, Tuesday to Saturday, all year round.",
        "Roughly 12,000 people live in Vela, and most of them live in the old town.",
        "In summer a ferry to Orla leaves every 40 minutes; in winter one leaves every two hours.",
        "The harbour was enlarged in 1972 to take container ships from the north.",
        "Tourists often visit the lighthouse museum, which is open every afternoon in July.",
        "The town council meets monthly in the old customs house near the market.",
        "Fishing remains the largest employer, followed by tourism and ship repair.",
        "The ferry crossing to Orla takes about half an hour in calm weather.",
    ]
    * 2
)


async def _judge_ms(guard: GroundingGuard, context_sources: list[Source], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await guard.judge([ANSWER], guard.default_thresholds, JudgeContext(sources=context_sources))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _embedding_only_ms(embedder: Any, runs: int) -> float:
    texts = [s.text for s in sentences(ANSWER)] + [
        s.text for source in SOURCES for s in sentences(source.text)
    ]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        embedder.embed(texts)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def run(passages: int, runs: int, scratch: Path) -> list[str]:
    embedder = load_embedder()
    real = [Source(f"kb-{i}", fact) for i, fact in enumerate(FACTS)]
    # Index build throughput, on real passages.
    corpus = [Source(f"c-{i}", f"{FACTS[i % 5]} Record {i} of the harbour archive.") for i in range(2000)]
    started = time.perf_counter()
    build_index(corpus, embedder.embed, scratch / "real", batch_size=64)
    build_rate = len(corpus) / (time.perf_counter() - started)
    # The big database: random unit vectors around the real passages.
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((passages - len(real), embedder.dimension)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    vectors = np.concatenate([embedder.embed([p.text for p in real]), noise])
    fillers = [Source(f"filler-{i}", "filler") for i in range(len(noise))]
    directory = scratch / "big"
    directory.mkdir()
    (directory / "passages.jsonl").write_bytes(
        b"".join(__import__("msgspec").json.encode(p) + b"\n" for p in real + fillers)
    )
    np.save(directory / "vectors.npy", vectors)
    index = CitationIndex.load(directory)
    queries = embedder.embed([s for s in ANSWER.split(". ")][:20])
    started = time.perf_counter()
    for _ in range(runs):
        index.search(queries)
    search_ms = (time.perf_counter() - started) / runs * 1000

    pool = RunnerPool()
    resources = GuardResources(pool, None, scratch)
    with_sources = GroundingGuard("g", GroundingConfig(), resources)
    with_database = GroundingGuard("db", GroundingConfig(citation_db=str(directory)), resources)
    await with_sources.start()
    await with_database.start()
    await _judge_ms(with_sources, SOURCES, 2)  # warm-up
    sources_ms = await _judge_ms(with_sources, SOURCES, runs)
    baseline_ms = _embedding_only_ms(embedder, runs)
    database_ms = await _judge_ms(with_database, [], runs)
    await pool.close()
    return [
        f"| 300-word answer (20 claims) vs 5 request sources | {sources_ms:.0f} ms |",
        f"| baseline: embedding the answer's and the sources' sentences alone | {baseline_ms:.0f} ms |",
        f"| 300-word answer vs a citation database of {passages:,} passages | {database_ms:.0f} ms |",
        f"| of which: exact search of 20 claims in {passages:,} passages | {search_ms:.1f} ms |",
        f"| index build (embedding real passages) | {build_rate:.0f} passages/s "
        f"(100,000 in about {100_000 / build_rate / 60:.0f} min) |",
        f"| index memory | {vectors.nbytes / 1e6:.0f} MB for {passages:,} x {embedder.dimension} float32 |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hhh-grounding-bench-") as scratch:
        rows = asyncio.run(run(args.passages, args.runs, Path(scratch)))
    report = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()} with `{command_line()}`; embedded default "
        "scorer (all-MiniLM-L6-v2, "
        f"precision auto), median of {args.runs} runs, each with a fresh request context (sources embedded "
        "every time).\n\n| case | latency |\n|---|---:|\n" + "\n".join(rows) + "\n"
    )
    RESULTS.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
