"""Precision and recall per entity type for the PII guard, on labelled spans.

A predicted span counts as correct when it overlaps a gold span of the same type; a gold span counts as
found when a predicted span of its type overlaps it. (The evaluator's sentences split an address into
several adjacent spans, so exact-boundary matching would measure the tokenisation, not the detection.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from guards.verdict import Verdict


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score_pii(
    rows: Sequence[dict[str, Any]], verdicts: Sequence[Verdict], entities: Sequence[str]
) -> dict[str, tuple[float, float, int, int]]:
    """entity → (precision, recall, gold spans, predicted spans)."""
    figures = {}
    for entity in entities:
        gold_total = found = predicted_total = correct = 0
        for row, verdict in zip(rows, verdicts, strict=True):
            gold = [(s["start"], s["end"]) for s in row["spans"] if s["entity_type"] == entity]
            predicted = [(s.start, s.end) for s in verdict.spans if s.label == entity]
            gold_total += len(gold)
            predicted_total += len(predicted)
            found += sum(any(_overlaps(g, p) for p in predicted) for g in gold)
            correct += sum(any(_overlaps(p, g) for g in gold) for p in predicted)
        if gold_total or predicted_total:
            precision = correct / predicted_total if predicted_total else 1.0
            recall = found / gold_total if gold_total else 1.0
            figures[entity] = (precision, recall, gold_total, predicted_total)
    return figures
