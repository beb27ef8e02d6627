"""A ranking task as Label Studio shows it to annotators: the task's ``data``.

The answers are shuffled, in an order seeded by the task (a re-sync shows the same order), and known to
Label Studio only by their letters: "Answer A", "Answer B", ... The gateway maps the letters back to its
candidates itself (``shown_candidates``), so neither the ids nor the order give away which answer the
client got. A badge follows the label only when a guard changed or flagged that answer."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from feedback.labelstudio.config import CANDIDATES, CONVERSATION, LEFT, RIGHT
from feedback.messages import message_text
from feedback.ranking import Candidate, RankingTask

# The field of a task's data that names its ranking task: how annotations and imports find their way back.
TASK_KEY = "hhh_task_key"
# The layout a task was made for; tasks of the legacy single-list layout have none.
LAYOUT = "hhh_layout"
# Flags that say a guard did not look, rather than that one changed or flagged the answer: no badge.
_NOT_A_GUARD_ACTION = ("no guard report", "not checked by the guards")
_PROMPT_COLUMN_CHARS = 200


def letter(index: int) -> str:
    """The label of the answer shown at ``index``: A..Z, then AA, AB, ...

    >>> [letter(i) for i in (0, 1, 25, 26, 27)]
    ['A', 'B', 'Z', 'AA', 'AB']
    """
    return letter(index // 26 - 1) + chr(65 + index % 26) if index >= 26 else chr(65 + index)


def shown_candidates(task: RankingTask) -> list[Candidate]:
    """The task's candidates in the order annotators see them. Seeded by the task key alone, over the
    candidates sorted by id, so the order does not depend on the order the gateway built them in."""
    seed = int.from_bytes(hashlib.sha256(f"shown-order:{task.task_key}".encode()).digest()[:8], "big")
    items = sorted(task.candidates, key=lambda c: c.id)
    random.Random(seed).shuffle(items)
    return items


def letters_to_ids(task: RankingTask) -> dict[str, str]:
    """What each label's letter stands for: the gateway's candidate id."""
    return {letter(i): c.id for i, c in enumerate(shown_candidates(task))}


def badge(candidate: Candidate) -> str:
    """What the guards did to an answer, or "" when none changed or flagged it."""
    return ", ".join(f for f in candidate.flags if not f.startswith(_NOT_A_GUARD_ACTION))


def _label(index: int, candidate: Candidate) -> str:
    found = badge(candidate)
    return f"Answer {letter(index)}" + (f" ⚠ {found}" if found else "")


def conversation(request: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation as turns (system, user, assistant, tool), for Label Studio's Paragraphs."""
    if "messages" not in request:
        return [{"role": "prompt", "content": str(request.get("prompt", ""))}]
    turns = []
    for message in request["messages"]:
        if not isinstance(message, dict):
            continue
        text = message_text(message)
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            names = [str((c.get("function") or {}).get("name")) for c in calls if isinstance(c, dict)]
            text += ("\n" if text else "") + f"[calls {', '.join(names)}]"
        turns.append({"role": str(message.get("role", "user")), "content": text})
    return turns


def _prompt_column(turns: list[dict[str, str]]) -> str:
    """The last user turn, short: what the data manager's prompt column shows."""
    asked = [t["content"] for t in turns if t["role"] in ("user", "prompt")] or [""]
    text = " ".join(asked[-1].split())
    return text if len(text) <= _PROMPT_COLUMN_CHARS else text[: _PROMPT_COLUMN_CHARS - 1] + "…"


def labelstudio_data(task: RankingTask, layout: str = "buckets") -> dict[str, Any]:
    """The task's data for ``layout``: "buckets", "pairwise" (two answers only) or "legacy" (projects
    made before the bucket layout: a single list, in the same shuffled order and letters)."""
    shown = shown_candidates(task)
    turns = conversation(task.request)
    data: dict[str, Any] = {
        "prompt": _prompt_column(turns),
        "answers": len(shown),
        TASK_KEY: task.task_key,
        "request_id": task.request_id,
        "tenant": task.tenant,
        "model": task.model,
    }
    if layout == "legacy":
        data["prompt"] = task.prompt
    else:
        data[CONVERSATION] = turns
        data[LAYOUT] = layout
    if layout == "pairwise":
        if len(shown) != 2:
            raise ValueError(f"the pairwise layout shows two answers; this task has {len(shown)}")
        data.update({LEFT: shown[0].text, RIGHT: shown[1].text,
                     "label_a": _label(0, shown[0]), "label_b": _label(1, shown[1])})  # fmt: skip
    else:
        data[CANDIDATES] = [
            {"id": letter(i), "title": _label(i, c), "body": c.text} for i, c in enumerate(shown)
        ]
    return data
