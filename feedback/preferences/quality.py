"""How far each annotator's rankings can be trusted, measured two ways:

- **Gold accuracy**: on gold tasks (a known best answer, ``feedback.labelstudio.gold``), how often the
  annotator put that answer alone in the best place.
- **Position bias**: how often the answer shown first (Answer A, in the task's shuffled order) was ranked
  best. Each ranking scores 1/m when Answer A shares the best place with m-1 others, else 0; an annotator
  who ignores position scores 1/K a ranking of K answers on average, whatever the shuffle. ``z`` is the
  excess over that chance in standard deviations (a binomial approximation); a z of 3 or more over
  ``MIN_RANKINGS`` or more rankings is reported as likely bias.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import msgspec

from feedback.ranking import AnnotationRecord, RankingTask

MIN_RANKINGS = 10
BIAS_Z = 3.0


class AnnotatorQuality(msgspec.Struct, kw_only=True):
    annotator: str
    gold_tasks: int = 0
    gold_correct: int = 0
    rankings: int = 0  # rankings whose shown order is known
    first_shown_best: float = 0.0  # sum of the per-ranking scores (see the module's docstring)
    chance: float = 0.0  # what they would sum to by chance
    variance: float = 0.0  # of that sum, by chance

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_tasks if self.gold_tasks else None

    @property
    def first_shown_rate(self) -> float | None:
        return self.first_shown_best / self.rankings if self.rankings else None

    @property
    def chance_rate(self) -> float | None:
        return self.chance / self.rankings if self.rankings else None

    @property
    def bias_z(self) -> float | None:
        variance = self.variance
        if not self.rankings or variance <= 0:
            return None
        return (self.first_shown_best - self.chance) / math.sqrt(variance)

    @property
    def position_biased(self) -> bool:
        z = self.bias_z
        return self.rankings >= MIN_RANKINGS and z is not None and z >= BIAS_Z


def gold_correct(places: list[list[str]], best: str) -> bool:
    """The gold answer alone in the best place.

    >>> gold_correct([["g"], ["a", "b"]], "g"), gold_correct([["g", "a"], ["b"]], "g")
    (True, False)
    """
    return bool(places) and places[0] == [best]


def first_shown_score(places: list[list[str]], shown: list[str]) -> float:
    """1/m when the answer shown first is among the m in the best place, else 0.

    >>> first_shown_score([["a"], ["b"]], ["a", "b"]), first_shown_score([["b", "a"]], ["a", "b"])
    (1.0, 0.5)
    """
    if not places or not shown or shown[0] not in places[0]:
        return 0.0
    return 1.0 / len(places[0])


def annotator_quality(
    ranked: Iterable[tuple[RankingTask, list[AnnotationRecord]]],
) -> dict[str, AnnotatorQuality]:
    """Per annotator, over every task (gold or not) and its annotations."""
    found: dict[str, AnnotatorQuality] = defaultdict(lambda: AnnotatorQuality(annotator=""))
    for task, records in ranked:
        for record in records:
            quality = found[record.annotator]
            quality.annotator = record.annotator
            if task.gold is not None:
                quality.gold_tasks += 1
                quality.gold_correct += gold_correct(record.places, task.gold)
            if record.shown and len(record.shown) >= 2:
                p = 1.0 / len(record.shown)
                quality.rankings += 1
                quality.first_shown_best += first_shown_score(record.places, record.shown)
                quality.chance += p
                quality.variance += p * (1 - p)
    return dict(sorted(found.items()))
