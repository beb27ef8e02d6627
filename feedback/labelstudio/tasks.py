"""Ranking tasks from recorded events: one task per prompt, its candidates being every choice of the
original completion (n>1) and of the extra candidates sampled for it."""

from __future__ import annotations

import hashlib
from typing import Any

from feedback.events import CompletionEvent

TASK_KEY = "hhh_task_key"


def prompt_text(request: dict[str, Any]) -> str:
    """The conversation as an annotator should read it."""
    if "messages" in request:
        lines = []
        for message in request["messages"]:
            content = message.get("content")
            if isinstance(content, list):
                content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
            lines.append(f"{message.get('role', 'user')}: {content or ''}")
        return "\n\n".join(lines)
    return str(request.get("prompt", ""))


def _answer(choice: dict[str, Any]) -> str:
    message = choice.get("message") or {}
    if message.get("content") is None and message.get("refusal"):
        return f"[blocked] {message['refusal']}"
    return str(message.get("content") if "message" in choice else choice.get("text", ""))


def _flags(event: CompletionEvent, index: int) -> str:
    output = (event.guardrails or {}).get("output") or []
    report = next((r for r in output if r.get("index") == index), None)
    if not report:
        return "no guard report"
    flagged = [
        f"{g['guard']}: {g['decision']}" for g in report.get("guards", []) if g.get("decision") != "pass"
    ]
    return ", ".join(flagged) or "all guards passed"


def task_key(request_id: str) -> str:
    """Stable per prompt, so a task pushed twice is recognised (delivery is at least once)."""
    return hashlib.sha256(request_id.encode()).hexdigest()[:32]


def ranking_task(original: CompletionEvent, candidates: list[CompletionEvent]) -> dict[str, Any] | None:
    """The task's data, or None when there are fewer than two answers to rank."""
    items = []
    for event in [original, *candidates]:
        for choice in event.choices:
            index = choice.get("index", 0)
            item_id = f"{event.id}:{index}"
            origin = (
                "answer"
                if event is original
                else f"candidate ({', '.join(f'{k}={v}' for k, v in (event.sampling or {}).items())})"
            )
            items.append(
                {"id": item_id, "title": f"{origin} - {_flags(event, index)}", "body": _answer(choice)}
            )
    if len(items) < 2:
        return None
    return {
        "prompt": prompt_text(original.request),
        "completions": items,
        TASK_KEY: task_key(original.id),
        "request_id": original.id,
        "tenant": original.tenant,
        "model": original.model,
    }
