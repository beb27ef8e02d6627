"""A ranking becomes pairs: every candidate ranked above another is "chosen" over it.

A ranking is a list of places, best first; the candidates in one place are tied. K candidates in K
places give C(K,2) pairs. Tied candidates give no pair by default: a tie says neither is preferred, and
a reward model trained on a pair learns a preference. With ``ties=True`` each tie gives one pair with
margin 0 (its order is the ids' order, which carries no meaning), for losses that use it.
"""

from __future__ import annotations

import msgspec


class Comparison(msgspec.Struct, frozen=True):
    """One judgement: ``chosen`` over ``rejected`` (candidate ids), by how much, and on whose word."""

    chosen: str
    rejected: str
    # Ranking: how many places apart (1 = neighbours; 0 = a tie). Aggregates define their own scale.
    margin: float
    annotator: str | None
    source: str  # "ranking", "majority", "bradley-terry", "preferred_choice", "thumbs"


def ranking_pairs(
    places: list[list[str]], *, annotator: str | None = None, ties: bool = False
) -> list[Comparison]:
    """
    >>> [(c.chosen, c.rejected, c.margin) for c in ranking_pairs([["a"], ["b", "c"]])]
    [('a', 'b', 1.0), ('a', 'c', 1.0)]
    """
    pairs = []
    for upper, better in enumerate(places):
        for lower in range(upper + 1, len(places)):
            for chosen in better:
                for rejected in places[lower]:
                    pairs.append(Comparison(chosen, rejected, float(lower - upper), annotator, "ranking"))
        if ties:
            tied = sorted(better)
            for i, first in enumerate(tied):
                for second in tied[i + 1 :]:
                    pairs.append(Comparison(first, second, 0.0, annotator, "ranking"))
    return pairs


def preference(places: list[list[str]], a: str, b: str) -> int:
    """+1 if ``a`` is ranked above ``b``, -1 if below, 0 if tied (or either is missing)."""
    position = {item: index for index, place in enumerate(places) for item in place}
    if a not in position or b not in position:
        return 0
    return (position[a] < position[b]) - (position[a] > position[b])
