"""How often people agree with the reward model that picked best-of-n's answers: the signal to retrain it.

Best-of-n records every answer it drew with the reward it got (``CompletionEvent.best_of_n``), and its
ranking tasks show them to annotators blind (``feedback.ranking``). For each such task people ranked, each
annotator's ranking of two scored answers is one **human pair** when it prefers one of them (a tie says
nothing about which is better); it **agrees** with the reward model when the preferred answer got the
higher reward, **disagrees** when the lower, and is a **reward tie** when both got the same. The rate is
agreements over human pairs: reward-model accuracy on fresh human data, per reward model. Blocked answers
were never scored and take no part.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import msgspec

from feedback.preferences.pairs import preference
from feedback.ranking import AnnotationRecord, RankingTask


class RewardAgreement(msgspec.Struct, kw_only=True):
    tasks: int = 0  # ranked tasks with at least two scored answers
    pairs: int = 0  # human pairs: an annotator preferred one of two scored answers
    agree: int = 0  # ... and the reward model scored it higher
    disagree: int = 0
    reward_ties: int = 0

    @property
    def rate(self) -> float | None:
        return self.agree / self.pairs if self.pairs else None

    def add(self, other: RewardAgreement) -> None:
        for field in self.__struct_fields__:
            setattr(self, field, getattr(self, field) + getattr(other, field))


def reward_agreement(
    ranked: Sequence[tuple[RankingTask, Sequence[AnnotationRecord]]],
) -> dict[str, RewardAgreement]:
    """Per reward model, how people's rankings of its scored answers agree with its rewards."""
    by_model: dict[str, RewardAgreement] = {}
    for task, records in ranked:
        rewards: dict[str, dict[str, float]] = {}  # reward model → candidate id → reward
        for candidate in task.candidates:
            if candidate.reward is not None and candidate.reward_model is not None:
                rewards.setdefault(candidate.reward_model, {})[candidate.id] = candidate.reward
        for model, scored in rewards.items():
            if len(scored) >= 2:
                by_model.setdefault(model, RewardAgreement()).add(_task_agreement(scored, records))
    return by_model


def _task_agreement(scored: dict[str, float], records: Sequence[AnnotationRecord]) -> RewardAgreement:
    found = RewardAgreement(tasks=1)
    for record in records:
        for first, second in combinations(sorted(scored), 2):
            verdict = preference(record.places, first, second)
            if verdict == 0:
                continue
            preferred, other = (first, second) if verdict > 0 else (second, first)
            found.pairs += 1
            found.agree += scored[preferred] > scored[other]
            found.disagree += scored[preferred] < scored[other]
            found.reward_ties += scored[preferred] == scored[other]
    return found
