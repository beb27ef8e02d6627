"""Ranking annotations: validated against the labelling config and the task (Label Studio itself checks
neither), every layout's result parsed (buckets, pairwise, and the legacy single list, in both of its
shapes), the answers' letters mapped back to the gateway's candidates, and turned into the record the
export reads.

An annotation that leaves an answer unplaced is rejected: in the bucket layout every answer starts
unplaced, so an untouched submission is not mistaken for a judgement."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from feedback.labelstudio.config import (
    CANDIDATES,
    DEFAULT_BUCKETS,
    LEFT,
    PAIRWISE,
    RANKER,
    bucket_name,
)
from feedback.labelstudio.tasks import LAYOUT, TASK_KEY, letters_to_ids, shown_candidates
from feedback.ranking import AnnotationRecord, RankingTask

UNPLACED = "_"  # the key of the column answers start in (Label Studio's own name for it)


class InvalidAnnotation(ValueError):
    pass


class SkippedTask(Exception):
    """The annotator skipped the task ("was_cancelled"): nothing to store, nothing wrong."""


class ConfigChecker(Protocol):
    """What we use of ``label_studio_sdk.label_interface.LabelInterface``."""

    def validate_prediction(self, prediction: Any, return_errors: bool = ...) -> Any: ...


class Ranking(msgspec.Struct, frozen=True):
    """Candidate ids from best to worst; ids in one inner list are tied."""

    places: list[list[str]]


def _only(result: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [
        r for r in result if isinstance(r, dict) and r.get("type") == kind and r.get("from_name") == name
    ]
    if len(found) != 1:
        raise InvalidAnnotation(f"expected one '{name}' {kind} result, found {len(found)}")
    return found[0]


def _check_all_placed(places: list[list[str]], candidate_ids: list[str]) -> Ranking:
    seen = [item for place in places for item in place]
    if len(set(seen)) != len(seen) or set(seen) - set(candidate_ids):
        raise InvalidAnnotation(
            f"the ranking must place every candidate once: got {sorted(seen)}, "
            f"expected {sorted(candidate_ids)}"
        )
    if unplaced := sorted(set(candidate_ids) - set(seen)):
        raise InvalidAnnotation(
            f"answers left unplaced: {', '.join(unplaced)} (every answer must go in a bucket; an untouched "
            "submission is not a judgement)"
        )
    return Ranking([place for place in places if place])


def parse_ranking(
    result: list[dict[str, Any]], candidate_ids: list[str], buckets: tuple[str, ...] | list[str] = ()
) -> Ranking:
    """A ranker result → a ranking of every candidate. The single list is ``{"ranker": {"rank": [...]}}``
    through the API and ``{"ranker": {"_": [...]}}`` from the browser. With buckets (``buckets``: their
    titles, best first) each bucket is one place, its answers tied, and ``"_"`` holds the unplaced.

    >>> parse_ranking([{"from_name": "rank", "to_name": "completions", "type": "ranker",
    ...                 "value": {"ranker": {"_": ["b", "a"]}}}], ["a", "b"]).places
    [['b'], ['a']]
    >>> parse_ranking([{"from_name": "rank", "to_name": "completions", "type": "ranker",
    ...                 "value": {"ranker": {"_": [], "best": ["a", "b"], "worst": ["c"]}}}],
    ...               ["a", "b", "c"], ["Best", "Worst"]).places
    [['a', 'b'], ['c']]
    """
    if buckets and not any(isinstance(r, dict) and r.get("type") == "ranker" for r in result):
        return _check_all_placed([], candidate_ids)  # submitted untouched: Label Studio sends no result
    ranker = _only(result, "ranker", RANKER)
    if ranker.get("to_name") != CANDIDATES:
        raise InvalidAnnotation(f"the ranker must rank '{CANDIDATES}', not {ranker.get('to_name')!r}")
    value = (ranker.get("value") or {}).get("ranker")
    if not isinstance(value, dict) or not value:
        raise InvalidAnnotation("the ranker result has no 'ranker' value")
    if any(not isinstance(items, list) for items in value.values()):
        raise InvalidAnnotation("each ranker column must be a list of answers")
    if not buckets:
        order = value.get(RANKER, value.get(UNPLACED)) or []
        return _check_all_placed([[str(item)] for item in order], candidate_ids)
    names = [bucket_name(t) for t in buckets]
    if unknown := sorted(set(value) - set(names) - {UNPLACED}):
        raise InvalidAnnotation(f"unknown buckets {unknown}: the config has {names}")
    # Answers still in "_" are not in any place, and are reported unplaced.
    return _check_all_placed([[str(i) for i in value.get(name) or []] for name in names], candidate_ids)


def parse_pairwise(result: list[dict[str, Any]], left: str, right: str) -> Ranking:
    """A pairwise choice → a ranking of the two answers (``left`` shown as Answer A)."""
    if not any(isinstance(r, dict) and r.get("type") == "pairwise" for r in result):
        raise InvalidAnnotation("no answer was chosen: an untouched submission is not a judgement")
    chosen = (_only(result, "pairwise", PAIRWISE).get("value") or {}).get("selected")
    if chosen not in ("left", "right"):
        raise InvalidAnnotation(f"the pairwise choice must be 'left' or 'right', not {chosen!r}")
    return Ranking([[left], [right]] if chosen == "left" else [[right], [left]])


def _annotator(completed_by: Any) -> str:
    if isinstance(completed_by, dict):  # the task API nests the user; webhooks send the id
        return str(completed_by.get("email") or completed_by.get("id"))
    return str(completed_by)


def _ranking(
    annotation: dict[str, Any], data: dict[str, Any], stored: RankingTask | None, buckets: tuple[str, ...]
) -> tuple[Ranking, list[str] | None]:
    """The ranking in candidate ids, and the ids in the order shown; by the task's layout."""
    layout = data.get(LAYOUT)
    result = annotation.get("result")
    if not isinstance(result, list):
        raise InvalidAnnotation("the annotation's 'result' must be a list")
    if layout in ("buckets", "pairwise"):
        if stored is None:
            raise InvalidAnnotation("the gateway does not know this task (its record has expired?)")
        letters = letters_to_ids(stored)
        if layout == "pairwise":
            ranking = parse_pairwise(result, "A", "B")
        else:
            ranking = parse_ranking(result, list(letters), buckets)
        places = [[letters[item] for item in place] for place in ranking.places]
        return Ranking(places), [c.id for c in shown_candidates(stored)]
    if layout is not None:
        raise InvalidAnnotation(f"unknown layout {layout!r}")
    # The legacy single list: candidate ids in the data (old tasks), or letters (new tasks pushed to a
    # project that still has the legacy config).
    items = data.get(CANDIDATES) or []
    if not isinstance(items, list):
        raise InvalidAnnotation(f"the task's '{CANDIDATES}' must be a list")
    listed = [str(c.get("id")) for c in items if isinstance(c, dict)]
    ranking = parse_ranking(result, listed)
    letters = letters_to_ids(stored) if stored is not None else {}
    if listed and all(i in letters for i in listed):
        return Ranking([[letters[i] for i in place] for place in ranking.places]), [
            letters[i] for i in listed
        ]
    return ranking, listed


def _for_checking(annotation: dict[str, Any]) -> dict[str, Any]:
    """The annotation as the SDK's checker expects it. The browser writes a pairwise choice with
    ``to_name`` naming the Pairwise tag itself, which the checker does not know: it is checked against
    the left answer, which it does. (The same check as for annotations: the server does none.)"""
    result = annotation.get("result")
    if not isinstance(result, list) or not any(
        isinstance(r, dict) and r.get("type") == "pairwise" and r.get("to_name") == PAIRWISE for r in result
    ):
        return annotation
    fixed = [
        {**r, "to_name": LEFT} if isinstance(r, dict) and r.get("to_name") == PAIRWISE else r for r in result
    ]
    return {**annotation, "result": fixed}


def read_annotation(
    annotation: dict[str, Any],
    task: dict[str, Any],
    config: ConfigChecker,
    project: int | None,
    stored: RankingTask | None = None,
    buckets: tuple[str, ...] = DEFAULT_BUCKETS,
) -> AnnotationRecord:
    """Check one annotation of one task and make its record; raises InvalidAnnotation or SkippedTask.
    ``config`` checks it against the labelling config of the task's layout; ``stored`` is the gateway's
    own record of the task, which maps the answers' letters back; ``buckets``: the bucket titles."""
    if not isinstance(annotation, dict) or not isinstance(task, dict):
        raise InvalidAnnotation("the annotation and its task must be JSON objects")
    data = task.get("data") or {}
    if not isinstance(data, dict):
        raise InvalidAnnotation("the task's 'data' must be a JSON object")
    task_key = data.get(TASK_KEY)
    if not isinstance(task_key, str):
        raise InvalidAnnotation(f"the task has no '{TASK_KEY}': it was not made by the gateway")
    if annotation.get("was_cancelled"):
        raise SkippedTask(task_key)
    errors = config.validate_prediction(_for_checking(annotation), return_errors=True)
    if errors:
        raise InvalidAnnotation("does not match the labelling config: " + "; ".join(map(str, errors)))
    ranking, shown = _ranking(annotation, data, stored, buckets)
    try:
        return AnnotationRecord(
            task_key=task_key,
            annotation_id=int(annotation["id"]),
            ls_task_id=int(task["id"]),
            project=project,
            annotator=_annotator(annotation.get("completed_by")),
            places=ranking.places,
            created_at=str(annotation.get("created_at") or ""),
            updated_at=str(annotation.get("updated_at") or annotation.get("created_at") or ""),
            lead_time_s=float(lead) if isinstance(lead := annotation.get("lead_time"), int | float) else None,
            shown=shown,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidAnnotation(f"the annotation or task lacks a valid id: {exc}") from None
