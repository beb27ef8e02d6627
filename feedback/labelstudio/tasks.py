"""A ranking task as Label Studio shows it to annotators: the task's ``data``, each candidate titled with
where it came from and what the guards said of it."""

from __future__ import annotations

from typing import Any

from feedback.ranking import Candidate, RankingTask

# The field of a task's data that names its ranking task: how annotations and imports find their way back.
TASK_KEY = "hhh_task_key"


def labelstudio_data(task: RankingTask) -> dict[str, Any]:
    items = [{"id": c.id, "title": _title(c), "body": c.text} for c in task.candidates]
    return {
        "prompt": task.prompt,
        "completions": items,
        TASK_KEY: task.task_key,
        "request_id": task.request_id,
        "tenant": task.tenant,
        "model": task.model,
    }


def _title(candidate: Candidate) -> str:
    origin = candidate.origin
    if candidate.sampling:
        origin += f" ({', '.join(f'{k}={v}' for k, v in candidate.sampling.items())})"
    return f"{origin} - {', '.join(candidate.flags) or 'all guards passed'}"
