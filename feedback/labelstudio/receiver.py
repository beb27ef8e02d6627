"""Annotations coming back, from either road: the webhook (one event at a time) or the reconciling poll
(every task changed since the last poll). Both end in the same checks and the same idempotent store."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from feedback.labelstudio.annotations import (
    ConfigChecker,
    InvalidAnnotation,
    SkippedTask,
    read_annotation,
)
from feedback.labelstudio.config import DEFAULT_BUCKETS, legacy_config, ranking_config
from feedback.labelstudio.tasks import LAYOUT, TASK_KEY
from feedback.ranking import AnnotationRecord
from feedback.store import FeedbackStore

log = logging.getLogger("hhh.labelstudio")

ACTIONS_WITH_ANNOTATION = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
DELETED = "ANNOTATIONS_DELETED"


class MalformedWebhook(ValueError):
    """The call is not a Label Studio annotation event."""


def ranking_checker(layout: str = "buckets", buckets: tuple[str, ...] = DEFAULT_BUCKETS) -> ConfigChecker:
    """The SDK's check of results against the config of ``layout`` ("legacy": the old single list)."""
    from label_studio_sdk.label_interface.interface import LabelInterface

    config = legacy_config() if layout == "legacy" else ranking_config(layout, buckets)
    checker: ConfigChecker = LabelInterface(config)
    return checker


class AnnotationReceiver:
    """``buckets``: the bucket titles of the project's config, best first (the settings' ``buckets``)."""

    def __init__(
        self,
        store: FeedbackStore,
        checker: ConfigChecker | None = None,
        buckets: tuple[str, ...] | list[str] = DEFAULT_BUCKETS,
    ) -> None:
        self.store = store
        self.buckets = tuple(buckets)
        self._checkers: dict[str, ConfigChecker] = {} if checker is None else {"*": checker}

    def checker(self, layout: str) -> ConfigChecker:
        """Tasks of every layout can be in one project's history (a project moved to a new layout)."""
        if "*" in self._checkers:
            return self._checkers["*"]
        if layout not in self._checkers:
            self._checkers[layout] = ranking_checker(layout, self.buckets)
        return self._checkers[layout]

    async def _read(self, annotation: Any, task: Any, project: int | None) -> AnnotationRecord:
        data = task.get("data") if isinstance(task, dict) else None
        data = data if isinstance(data, dict) else {}
        layout = str(data[LAYOUT]) if data.get(LAYOUT) in ("buckets", "pairwise") else "legacy"
        key = data.get(TASK_KEY)
        stored = await self.store.task(key) if isinstance(key, str) else None
        return read_annotation(annotation, task, self.checker(layout), project, stored, self.buckets)

    async def take(self, annotation: Any, task: Any, project: int | None) -> str:
        """Check and store one annotation. Returns new, updated, same, skipped or rejected."""
        try:
            record = await self._read(annotation, task, project)
        except SkippedTask:
            await self.store.count("skipped")
            return "skipped"
        except InvalidAnnotation as exc:
            annotation_id = annotation.get("id") if isinstance(annotation, dict) else None
            identity = None
            if annotation_id is not None:
                identity = f"{annotation_id}@{annotation.get('updated_at') or annotation.get('created_at')}"
            payload = {"annotation": annotation, "task": _task_id(task)}
            if not await self.store.reject(str(exc), payload, identity):
                return "same"
            log.warning("rejected annotation %s of task %s: %s", annotation_id, _task_id(task), exc)
            return "rejected"
        return await self.store.save_annotation(record)

    async def webhook(self, payload: Any) -> Counter[str]:
        """One webhook call. Raises MalformedWebhook for a body that is no Label Studio event."""
        if not isinstance(payload, dict) or not isinstance(payload.get("action"), str):
            raise MalformedWebhook("expected a JSON object with an 'action'")
        action = payload["action"]
        project = _project_id(payload.get("project"))
        outcomes: Counter[str] = Counter()
        if action in ACTIONS_WITH_ANNOTATION:
            annotation, task = payload.get("annotation"), payload.get("task")
            if not isinstance(annotation, dict) or not isinstance(task, dict):
                raise MalformedWebhook(f"{action} needs 'annotation' and 'task' objects")
            if task.get("data") is not None and not isinstance(task["data"], dict):
                raise MalformedWebhook(f"{action} needs a 'task.data' object")
            outcomes[await self.take(annotation, task, project)] += 1
        elif action == DELETED:
            annotations = payload.get("annotations")
            if not isinstance(annotations, list):
                raise MalformedWebhook(f"{action} needs 'annotations'")
            for item in annotations:
                deleted = isinstance(item, dict) and await self._delete(item)
                outcomes["deleted" if deleted else "unknown"] += 1
        else:
            outcomes["ignored"] += 1  # another action the webhook was set up for by hand
        return outcomes

    async def _delete(self, annotation: dict[str, Any]) -> bool:
        """Label Studio names only the annotation's id (``{"annotations": [{"id": 1}]}``)."""
        try:
            annotation_id = int(annotation["id"])
        except (KeyError, TypeError, ValueError):
            return False
        task_key = await self.store.task_key_of_annotation(annotation_id)
        return task_key is not None and await self.store.delete_annotation(task_key, annotation_id)

    async def reconcile(self, task: dict[str, Any], project: int) -> Counter[str]:
        """A task as the poll sees it: take every annotation, forget those deleted in Label Studio."""
        outcomes: Counter[str] = Counter()
        present = set()
        for annotation in task.get("annotations") or []:
            outcomes[await self.take(annotation, task, project)] += 1
            if isinstance(annotation, dict) and "id" in annotation:
                present.add(int(annotation["id"]))
        data = task.get("data")
        task_key = data.get("hhh_task_key") if isinstance(data, dict) else None
        if isinstance(task_key, str):
            for stored in await self.store.annotations(task_key):
                if stored.annotation_id not in present and await self.store.delete_annotation(
                    task_key, stored.annotation_id
                ):
                    outcomes["deleted"] += 1
        return outcomes


def _project_id(value: Any) -> int | None:
    if isinstance(value, dict):
        value = value.get("id")
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _task_id(task: Any) -> Any:
    return task.get("id") if isinstance(task, dict) else None
