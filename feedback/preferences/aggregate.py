"""Several annotators ranked the same task: keep each one's pairs, or agree on one set of pairs.

- ``none``: every annotator's pairs, each row naming its annotator. Disagreements stay in the data.
- ``majority``: for each two candidates, the side more annotators put first wins; ties in the vote (or
  in every ranking) give no pair. Margin: (votes for - votes against) / annotators, in (0, 1].
- ``bradley-terry``: a Bradley-Terry model fitted to every annotator's pairwise judgements of the task
  (Hunter's MM algorithm; a prior of one pseudo-win per candidate, spread over its opponents, keeps an
  always-winner finite); pairs follow the fitted strengths. Margin: the difference of log-strengths,
  the model's own logit for "chosen beats rejected".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

from feedback.preferences.pairs import Comparison, preference, ranking_pairs

AGGREGATIONS = ("none", "majority", "bradley-terry")


def candidates_of(rankings: Sequence[list[list[str]]]) -> list[str]:
    return sorted({item for places in rankings for place in places for item in place})


def per_annotator(rankings: Sequence[tuple[str, list[list[str]]]], ties: bool = False) -> list[Comparison]:
    return [
        pair
        for annotator, places in rankings
        for pair in ranking_pairs(places, annotator=annotator, ties=ties)
    ]


def majority(rankings: Sequence[list[list[str]]], ties: bool = False) -> list[Comparison]:
    pairs = []
    for a, b in combinations(candidates_of(rankings), 2):
        votes = sum(preference(places, a, b) for places in rankings)
        if votes:
            chosen, rejected = (a, b) if votes > 0 else (b, a)
            pairs.append(Comparison(chosen, rejected, abs(votes) / len(rankings), None, "majority"))
        elif ties:
            pairs.append(Comparison(a, b, 0.0, None, "majority"))
    return pairs


def bradley_terry_strengths(rankings: Sequence[list[list[str]]], iterations: int = 200) -> dict[str, float]:
    """Log-strengths (mean 0) from every ranking's pairwise wins; ties count half a win each way."""
    items = candidates_of(rankings)
    wins = {(a, b): 0.0 for a in items for b in items if a != b}
    for places in rankings:
        for a, b in combinations(items, 2):
            outcome = preference(places, a, b)
            wins[(a, b)] += 1.0 if outcome > 0 else 0.5 if outcome == 0 else 0.0
            wins[(b, a)] += 1.0 if outcome < 0 else 0.5 if outcome == 0 else 0.0
    for key in wins:
        wins[key] += 1.0 / max(1, len(items) - 1)  # the prior: keeps an always-winner finite
    strength = dict.fromkeys(items, 1.0)
    for _ in range(iterations):
        updated = {}
        for i in items:
            total_wins = sum(wins[(i, j)] for j in items if j != i)
            denominator = sum(
                (wins[(i, j)] + wins[(j, i)]) / (strength[i] + strength[j]) for j in items if j != i
            )
            updated[i] = total_wins / denominator if denominator else strength[i]
        scale = math.exp(sum(math.log(v) for v in updated.values()) / len(updated))
        strength = {i: v / scale for i, v in updated.items()}
    return {i: math.log(v) for i, v in strength.items()}


def bradley_terry(rankings: Sequence[list[list[str]]], ties: bool = False) -> list[Comparison]:
    scores = bradley_terry_strengths(rankings)
    pairs = []
    for a, b in combinations(sorted(scores), 2):
        gap = scores[a] - scores[b]
        if abs(gap) > 1e-6:
            chosen, rejected = (a, b) if gap > 0 else (b, a)
            pairs.append(Comparison(chosen, rejected, abs(gap), None, "bradley-terry"))
        elif ties:
            pairs.append(Comparison(a, b, 0.0, None, "bradley-terry"))
    return pairs


def aggregate(
    rankings: Sequence[tuple[str, list[list[str]]]], how: str, ties: bool = False
) -> list[Comparison]:
    """``rankings``: (annotator, places) for one task."""
    if how == "none":
        return per_annotator(rankings, ties)
    places = [p for _, p in rankings]
    if how == "majority":
        return majority(places, ties)
    if how == "bradley-terry":
        return bradley_terry(places, ties)
    raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {how!r}")
