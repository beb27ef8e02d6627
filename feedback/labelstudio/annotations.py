"""Ranking annotations: validated against the labelling config and the task (Label Studio itself checks
neither), both shapes of the ranker result parsed, and turned into the record the export reads."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from feedback.labelstudio.config import CANDIDATES, RANKER
from feedback.labelstudio.tasks import TASK_KEY
from feedback.ranking import AnnotationRecord


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


def _annotator(completed_by: Any) -> str:
    if isinstance(completed_by, dict):  # the task API nests the user; webhooks send the id
        return str(completed_by.get("email") or completed_by.get("id"))
    return str(completed_by)


def read_annotation(
    annotation: dict[str, Any], task: dict[str, Any], config: ConfigChecker, project: int | None
) -> AnnotationRecord:
    """Check one annotation of one task and make its record; raises InvalidAnnotation or SkippedTask."""
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
    errors = config.validate_prediction(annotation, return_errors=True)  # same check as for annotations
    if errors:
        raise InvalidAnnotation("does not match the labelling config: " + "; ".join(map(str, errors)))
    candidates = data.get(CANDIDATES) or []
    if not isinstance(candidates, list):
        raise InvalidAnnotation(f"the task's '{CANDIDATES}' must be a list")
    candidate_ids = [str(c.get("id")) for c in candidates if isinstance(c, dict)]
    ranking = parse_ranking(annotation["result"], candidate_ids)
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
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidAnnotation(f"the annotation or task lacks a valid id: {exc}") from None
