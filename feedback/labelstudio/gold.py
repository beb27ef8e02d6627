"""Gold tasks: prompts with a known best answer, mixed into the annotators' queue to measure them.

The file (``feedback.labelstudio.gold_file``) holds one JSON object a line::

    {"id": "capital-fr", "messages": [{"role": "user", "content": "Capital of France?"}],
     "answers": ["Paris.", "Lyon.", "I cannot help with that."], "best": 0}

(``prompt`` instead of ``messages`` for a completion prompt.) Each time a gold task is due, the next item
becomes a task of its own (a new key, so one item can come round again), shown like any other: shuffled,
lettered, nothing saying it is gold. The export leaves gold tasks out of the pairs and scores annotators
on them (``feedback.preferences.quality``)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import msgspec

from feedback.ranking import Candidate, RankingTask, task_key, transcript

MAX_GOLD_ITEMS = 10_000
MAX_ANSWERS = 26


class GoldItem(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    answers: list[str]
    best: int
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None

    def __post_init__(self) -> None:
        if not 2 <= len(self.answers) <= MAX_ANSWERS:
            raise ValueError(f"answers: between 2 and {MAX_ANSWERS}")
        if not 0 <= self.best < len(self.answers):
            raise ValueError("best: the index of one of the answers")
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("one of messages or prompt")


def load_gold(path: str | Path) -> list[GoldItem]:
    """Every item of the file; a bad line raises ValueError naming it."""
    items = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(msgspec.json.decode(line, type=GoldItem))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise ValueError(f"feedback.labelstudio.gold_file: line {number}: {exc}") from None
        if len(items) > MAX_GOLD_ITEMS:
            raise ValueError(f"feedback.labelstudio.gold_file: more than {MAX_GOLD_ITEMS} items")
    if not items:
        raise ValueError(f"feedback.labelstudio.gold_file: no items in {path}")
    return items


def gold_due(real_pushed: int, gold_pushed: int, rate: float) -> int:
    """How many gold tasks to push now, so that ``rate`` of all tasks pushed are gold.

    >>> gold_due(9, 0, 0.1), gold_due(18, 1, 0.1), gold_due(5, 0, 0.1)
    (1, 1, 0)
    """
    if rate <= 0:
        return 0
    return max(0, math.floor(real_pushed * rate / (1 - rate) + 1e-9) - gold_pushed)


def gold_task(item: GoldItem, serial: int, tenant: str = "gold") -> RankingTask:
    """The ``serial``-th gold task, made of ``item``."""
    request_id = f"gold:{item.id}:{serial}"
    request: dict[str, Any] = (
        {"messages": item.messages} if item.messages is not None else {"prompt": item.prompt}
    )
    digest = hashlib.sha256(request_id.encode()).hexdigest()[:12]
    candidates = [
        Candidate(id=f"gold-{digest}:{i}", text=text, model="gold", origin="gold")
        for i, text in enumerate(item.answers)
    ]
    return RankingTask(
        task_key=task_key(request_id), request_id=request_id, tenant=tenant, model="gold",
        endpoint="gold", created=0.0, request=request, prompt=transcript(request), candidates=candidates,
        gold=candidates[item.best].id,
    )  # fmt: skip
