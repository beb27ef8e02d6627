"""Ranking annotations: both shapes of the ranker result, and validation against the task."""

from __future__ import annotations

from typing import Any

import msgspec

from feedback.labelstudio.config import CANDIDATES, RANKER


class InvalidAnnotation(ValueError):
    pass


class Ranking(msgspec.Struct, frozen=True):
    """Candidate ids from best to worst; ids in one inner list are tied."""

    places: list[list[str]]


def parse_ranking(result: list[dict[str, Any]], candidate_ids: list[str]) -> Ranking:
    """A ranker result → a ranking of every candidate. Label Studio writes ``{"ranker": {"rank": [...]}}``
    through the API, and ``{"ranker": {"_": [...]}}`` from the browser; with buckets, one key a bucket.

    >>> parse_ranking([{"from_name": "rank", "to_name": "completions", "type": "ranker",
    ...                 "value": {"ranker": {"_": ["b", "a"]}}}], ["a", "b"]).places
    [['b'], ['a']]
    """
    rankers = [r for r in result if r.get("type") == "ranker" and r.get("from_name") == RANKER]
    if len(rankers) != 1:
        raise InvalidAnnotation(f"expected one '{RANKER}' ranker result, found {len(rankers)}")
    ranker = rankers[0]
    if ranker.get("to_name") != CANDIDATES:
        raise InvalidAnnotation(f"the ranker must rank '{CANDIDATES}', not {ranker.get('to_name')!r}")
    value = (ranker.get("value") or {}).get("ranker")
    if not isinstance(value, dict) or not value:
        raise InvalidAnnotation("the ranker result has no 'ranker' value")
    if RANKER in value or "_" in value:
        order = value.get(RANKER, value.get("_")) or []
        places = [[str(item)] for item in order]
    else:  # buckets: each bucket is one place, in the config's order
        places = [list(items) for items in value.values() if items]
    seen = [item for place in places for item in place]
    if sorted(seen) != sorted(candidate_ids) or len(set(seen)) != len(seen):
        expected = sorted(candidate_ids)
        raise InvalidAnnotation(
            f"the ranking must place every candidate once: got {sorted(seen)}, expected {expected}"
        )
    return Ranking(places)
