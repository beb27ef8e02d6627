"""Turning what a client received into an event: a whole response, or the chunks of a stream."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from feedback.events import CompletionEvent, GuardrailsReport, Timings

Chunk = dict[str, Any]


class EventMeta:
    """What the gateway knows about a request besides its body and answer."""

    def __init__(self, request_id: str, tenant: str, model: str, endpoint: str, stream: bool) -> None:
        self.request_id = request_id  # the x-request-id: the client may choose it, so nothing is keyed by it
        self.event_id = uuid.uuid4().hex  # the recorded event's id, made here: no client can collide it
        self.tenant = tenant
        self.model = model
        self.endpoint = endpoint
        self.stream = stream
        self.candidates_requested = 0  # extra candidates scheduled for this request (sampling)
        # The answer's id as the client saw it, when not the upstream's (a Responses call's ``resp_…``).
        self.completion_id: str | None = None


def event_from_response(
    meta: EventMeta,
    request: dict[str, Any],
    body: dict[str, Any],
    timings: Timings | None,
    *,
    complete: bool = True,
) -> CompletionEvent:
    """``body`` is a completion as the client received it (a stream's is assembled first)."""
    return CompletionEvent(
        id=meta.event_id,
        request_id=meta.request_id,
        completion_id=meta.completion_id or str(body.get("id", "")),
        created=time.time(),
        tenant=meta.tenant,
        model=meta.model,
        endpoint=meta.endpoint,
        stream=meta.stream,
        request=request,
        choices=list(body.get("choices") or []),
        guardrails=_report(body.get("guardrails")),
        usage=body.get("usage"),
        timings=timings,
        complete=complete,
        candidates_requested=meta.candidates_requested,
    )


def _report(value: Any) -> GuardrailsReport | None:
    """The gateway's own report. An unguarded answer's ``guardrails`` field is the upstream's (another
    gateway's, say): not this gateway's word, and not bound to its schema."""
    return value if isinstance(value, GuardrailsReport) else None


async def assemble(
    chunks: AsyncIterator[Chunk],
    meta: EventMeta,
    request: dict[str, Any],
    record: Callable[[CompletionEvent], None],
    timings: Callable[[], Timings | None],
) -> AsyncIterator[Chunk]:
    """Pass chunks through; when the stream ends (or is cut short) record what the client received."""
    choices: dict[int, dict[str, Any]] = {}
    state: dict[str, Any] = {"id": "", "usage": None, "guardrails": None}
    complete = False
    try:
        async for chunk in chunks:
            _absorb(chunk, choices, state)
            yield chunk
        complete = True
    finally:
        body = {**state, "choices": [choices[i] for i in sorted(choices)]}
        record(event_from_response(meta, request, body, timings(), complete=complete))


def _absorb(chunk: Chunk, choices: dict[int, dict[str, Any]], state: dict[str, Any]) -> None:
    state["id"] = state["id"] or str(chunk.get("id", ""))
    if chunk.get("usage"):
        state["usage"] = chunk["usage"]
    if isinstance(chunk.get("guardrails"), GuardrailsReport):
        state["guardrails"] = chunk["guardrails"]
    for choice in chunk.get("choices") or ():
        index = choice.get("index", 0)
        entry = choices.setdefault(index, {"index": index, "message": {"role": "assistant", "content": ""}})
        delta = choice.get("delta")
        if delta is None:  # legacy completions stream "text"
            entry.setdefault("text", "")
            entry["text"] += choice.get("text") or ""
        elif isinstance(delta, dict):
            _absorb_delta(delta, entry["message"])
        if choice.get("finish_reason"):
            entry["finish_reason"] = choice["finish_reason"]


def _absorb_delta(delta: dict[str, Any], message: dict[str, Any]) -> None:
    """Every text the client was sent (content, refusal, reasoning, …) is kept, as it was sent."""
    for key, value in delta.items():
        if key != "role" and isinstance(value, str):
            message[key] = (message.get(key) or "") + value
    if delta.get("tool_calls"):
        message.setdefault("tool_calls", []).extend(delta["tool_calls"])
    function_call = delta.get("function_call")
    if isinstance(function_call, dict):
        held = message.setdefault("function_call", {"arguments": ""})
        if function_call.get("name"):
            held["name"] = function_call["name"]
        held["arguments"] += function_call.get("arguments") or ""
