"""How much annotators agree: over every task two or more of them ranked, every two candidates, every two
annotators, the share of judgements (first better, second better, tied) that match."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import combinations

import msgspec

from feedback.preferences.aggregate import candidates_of
from feedback.preferences.pairs import preference


class AnnotatorAgreement(msgspec.Struct):
    annotator: str
    annotations: int
    comparisons: int  # judgements compared with another annotator's on the same two candidates
    agreed: int

    @property
    def rate(self) -> float | None:
        return self.agreed / self.comparisons if self.comparisons else None


class AgreementReport(msgspec.Struct):
    tasks: int  # tasks with at least one ranking
    tasks_with_overlap: int  # ranked by two or more annotators
    comparisons: int
    agreed: int
    annotators: list[AnnotatorAgreement]

    @property
    def rate(self) -> float | None:
        return self.agreed / self.comparisons if self.comparisons else None


def agreement(tasks: Iterable[Sequence[tuple[str, list[list[str]]]]]) -> AgreementReport:
    """``tasks``: for each task, its rankings as (annotator, places)."""
    annotations: dict[str, int] = defaultdict(int)
    compared: dict[str, int] = defaultdict(int)
    agreed_by: dict[str, int] = defaultdict(int)
    total = overlap = comparisons = agreed = 0
    for rankings in tasks:
        if not rankings:
            continue
        total += 1
        for annotator, _ in rankings:
            annotations[annotator] += 1
        if len(rankings) < 2:
            continue
        overlap += 1
        items = candidates_of([p for _, p in rankings])
        for (first, p1), (second, p2) in combinations(rankings, 2):
            for a, b in combinations(items, 2):
                same = preference(p1, a, b) == preference(p2, a, b)
                comparisons += 1
                agreed += same
                for who in (first, second):
                    compared[who] += 1
                    agreed_by[who] += same
    people = [AnnotatorAgreement(a, annotations[a], compared[a], agreed_by[a]) for a in sorted(annotations)]
    return AgreementReport(total, overlap, comparisons, agreed, people)
