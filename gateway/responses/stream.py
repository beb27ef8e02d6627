"""A chat-completions stream (chunks as the guarded chat path yields them) → Responses stream events.

Events go out as the chunks come, each with its ``sequence_number`` (from 0)::

    response.created, response.in_progress                    at once, before the first chunk
    response.output_item.added                                 an item begins (output_index: its place)
      response.content_part.added                              a part of it begins (content_index)
        response.output_text.delta / response.refusal.delta / response.reasoning_text.delta
      (…).done, response.content_part.done                     the part is whole
      response.function_call_arguments.delta / .done           for a function_call item
    response.output_item.done                                  the item is whole
    response.completed | response.incomplete                   the whole Response, with ``guardrails``

Choice 0's delta maps so: ``reasoning_content`` (or ``reasoning``) → a ``reasoning`` item; ``content`` →
an ``output_text`` part of a ``message`` item; ``refusal`` (an output guard's block, or the model's own)
→ a ``refusal`` part of the same message; ``tool_calls`` → ``function_call`` items, one per call index.
A chunk with no choices carries ``usage`` and the ``guardrails`` report (``gateway.guarded.stream_guard``):
both go on the final Response. ``finish_reason`` ``length`` and ``content_filter`` make the Response
``incomplete`` with that reason (``gateway.responses.response.status_of``).

An upstream failure mid-stream (a ``GatewayError`` from the chunks) ends the stream: the open items close
(the one cut short ``incomplete``), an ``error`` event carries the gateway's code, and ``response.failed``
the Response so far.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from gateway.errors import GatewayError
from gateway.responses.request import TranslatedRequest
from gateway.responses.response import (
    function_call_item,
    message_item,
    new_id,
    output_text,
    reasoning_item,
    refusal_part,
    response_object,
    status_of,
    usage_of,
)

Event = dict[str, Any]
Chunk = dict[str, Any]

# A part's type → its delta/done event prefix, the key its whole text has in the done event, and the
# extra fields the SDK requires of its text events.
_PART_EVENTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "output_text": ("response.output_text", "text", {"logprobs": []}),
    "refusal": ("response.refusal", "refusal", {}),
    "reasoning_text": ("response.reasoning_text", "text", {}),
}
_REASONING_KEYS = ("reasoning_content", "reasoning")


def _part(kind: str, text: str) -> dict[str, Any]:
    if kind == "output_text":
        return output_text(text)
    if kind == "refusal":
        return refusal_part(text)
    return {"type": kind, "text": text}


class _TextItem:
    """A message or reasoning item being streamed: its parts so far, the last one open."""

    def __init__(self, kind: str, output_index: int) -> None:
        self.kind = kind  # "message" or "reasoning"
        self.id = new_id("msg" if kind == "message" else "rs")
        self.output_index = output_index
        self.parts: list[tuple[str, list[str]]] = []  # (part type, text pieces)
        self.part_open = False

    def whole(self, status: str) -> dict[str, Any]:
        parts = [_part(kind, "".join(pieces)) for kind, pieces in self.parts]
        if self.kind == "message":
            return message_item(self.id, parts, status)
        item = reasoning_item(self.id, None, status)
        item["content"] = parts
        return item


class _CallItem:
    def __init__(self, output_index: int, call_id: str, name: str) -> None:
        self.id = new_id("fc")
        self.output_index = output_index
        self.call_id = call_id
        self.name = name
        self.arguments: list[str] = []

    def whole(self, status: str) -> dict[str, Any]:
        return function_call_item(self.id, self.call_id, self.name, "".join(self.arguments), status)


class ResponseEvents:
    """The translation's state: one per stream. ``start``, then ``chunk`` per chunk, then ``finish`` (or
    ``fail``); each returns the events to send, in order."""

    def __init__(self, request: TranslatedRequest, response_id: str | None, created_at: float | None) -> None:
        self.request = request
        self.response_id = response_id or new_id("resp")
        self.created_at = time.time() if created_at is None else created_at
        self.model = request.model
        self.sequence = 0
        self.output: list[dict[str, Any] | None] = []  # whole items by output_index; None while open
        self.text: _TextItem | None = None  # the message or reasoning item now streaming
        self.calls: dict[Any, _CallItem] = {}  # open function calls by chat tool-call index
        # Some servers send the reasoning under both names: the first one seen is the reasoning.
        self.reasoning_key: str | None = None
        self.finish_reason: str | None = None
        self.finished = False  # choice 0 has ended
        self.usage: Any = None
        self.has_report = False
        self.report: Any = None  # the guardrails report, once a chunk carried one (kept as it is)

    def event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return event

    def start(self) -> list[Event]:
        return [
            self.event("response.created", response=self._response("in_progress", [])),
            self.event("response.in_progress", response=self._response("in_progress", [])),
        ]

    def chunk(self, chunk: Chunk) -> list[Event]:
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        if "guardrails" in chunk:
            self.has_report, self.report = True, chunk["guardrails"]
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        events: list[Event] = []
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0 and not self.finished:
                events += self._choice(choice)
        return events

    def finish(self) -> list[Event]:
        events = [] if self.finished else self._end(None)
        status, incomplete_details = status_of(self.finish_reason)
        response = self._response(status, self._items(), incomplete_details)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return [*events, self.event(kind, response=response)]

    def fail(self, error: GatewayError) -> list[Event]:
        """The upstream failed mid-stream: the open items close (the last one incomplete), then the error."""
        events = [] if self.finished else self._close("incomplete")
        code = None if error.code is None else str(error.code)
        events.append(self.event("error", code=code, message=error.message, param=error.param))
        failure = {"code": "server_error", "message": error.message}  # the one code ResponseError has for it
        return [
            *events,
            self.event("response.failed", response=self._response("failed", self._items(), error=failure)),
        ]

    def _response(
        self,
        status: str,
        output: list[dict[str, Any]],
        incomplete_details: dict[str, str] | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        final = status != "in_progress"
        response = response_object(
            self.request,
            response_id=self.response_id,
            created_at=self.created_at,
            model=self.model,
            status=status,
            output=output,
            usage=usage_of(self.usage) if final else None,
            incomplete_details=incomplete_details,
            error=error,
        )
        if final and self.has_report:
            response["guardrails"] = self.report
        return response

    def _items(self) -> list[dict[str, Any]]:
        return [item for item in self.output if item is not None]

    def _choice(self, choice: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key in _REASONING_KEYS:
                if self.reasoning_key in (None, key) and isinstance(delta.get(key), str) and delta[key]:
                    self.reasoning_key = key
                    events += self._text_delta("reasoning", "reasoning_text", delta[key])
            events += self._text_delta("message", "output_text", delta.get("content"))
            events += self._text_delta("message", "refusal", delta.get("refusal"))
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, dict) and isinstance(call.get("function"), dict):
                    events += self._call_delta(call.get("index", 0), call.get("id"), call["function"])
            if isinstance(delta.get("function_call"), dict):  # the legacy single call
                events += self._call_delta("function_call", None, delta["function_call"])
        if choice.get("finish_reason") is not None:
            self.finish_reason = str(choice["finish_reason"])
            events += self._end(self.finish_reason)
        return events

    def _text_delta(self, item_kind: str, part_kind: str, text: Any) -> list[Event]:
        if not isinstance(text, str) or not text:
            return []
        events: list[Event] = []
        item = self.text
        if item is None or item.kind != item_kind:
            events += self._close_text("completed")
            item = self.text = _TextItem(item_kind, len(self.output))
            self.output.append(None)
            events.append(self._added(item.output_index, item.whole("in_progress")))
        if not item.part_open or item.parts[-1][0] != part_kind:
            events += self._close_part(item)
            item.parts.append((part_kind, []))
            item.part_open = True
            events.append(self._part_event("response.content_part.added", item, _part(part_kind, "")))
        item.parts[-1][1].append(text)
        prefix, _, extra = _PART_EVENTS[part_kind]
        events.append(self.event(f"{prefix}.delta", **self._where(item), delta=text, **extra))
        return events

    def _call_delta(self, key: Any, call_id: Any, function: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        call = self.calls.get(key)
        name = function.get("name")
        if call is None:
            events += self._close_text("completed")  # text before a call is whole; after it, a new item
            call_id = call_id if isinstance(call_id, str) and call_id else new_id("call")
            call = self.calls[key] = _CallItem(
                len(self.output), call_id, name if isinstance(name, str) else ""
            )
            self.output.append(None)
            events.append(self._added(call.output_index, call.whole("in_progress")))
        elif isinstance(name, str) and name and not call.name:
            call.name = name
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            call.arguments.append(arguments)
            events.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=call.id,
                    output_index=call.output_index,
                    delta=arguments,
                )
            )
        return events

    def _end(self, finish_reason: str | None) -> list[Event]:
        """Choice 0 has finished: every open item closes; only the last one can have been cut short. An
        answer always has a message or a call, as a whole one has (``output_items``)."""
        self.finished = True
        status, _ = status_of(finish_reason)
        answered = (
            bool(self.calls)
            or (self.text is not None and self.text.kind == "message")
            or any(item is not None and item["type"] in ("message", "function_call") for item in self.output)
        )
        return [*([] if answered else self._open_empty_message()), *self._close(status)]

    def _open_empty_message(self) -> list[Event]:
        """A message with one empty output_text part, open, so that closing it sends its done events."""
        events = self._close_text("completed")  # reasoning, if any, comes first
        item = self.text = _TextItem("message", len(self.output))
        self.output.append(None)
        events.append(self._added(item.output_index, item.whole("in_progress")))
        item.parts.append(("output_text", []))
        item.part_open = True
        events.append(self._part_event("response.content_part.added", item, _part("output_text", "")))
        return events

    def _close(self, last_status: str) -> list[Event]:
        """Close every open item, in output order; the last one gets ``last_status``."""
        open_items: list[_TextItem | _CallItem] = [*self.calls.values()]
        if self.text is not None:
            open_items.append(self.text)
        open_items.sort(key=lambda item: item.output_index)
        events: list[Event] = []
        for position, item in enumerate(open_items):
            status = last_status if position == len(open_items) - 1 else "completed"
            if isinstance(item, _TextItem):
                events += self._close_text(status)
            else:
                events += self._close_call(item, status)
        self.calls.clear()
        return events

    def _close_text(self, status: str) -> list[Event]:
        item = self.text
        if item is None:
            return []
        self.text = None
        return [*self._close_part(item), self._done(item.output_index, item.whole(status))]

    def _close_part(self, item: _TextItem) -> list[Event]:
        if not item.part_open:
            return []
        item.part_open = False
        kind, pieces = item.parts[-1]
        text = "".join(pieces)
        prefix, key, extra = _PART_EVENTS[kind]
        return [
            self.event(f"{prefix}.done", **self._where(item), **{key: text}, **extra),
            self._part_event("response.content_part.done", item, _part(kind, text)),
        ]

    def _close_call(self, call: _CallItem, status: str) -> list[Event]:
        done = self.event(
            "response.function_call_arguments.done",
            item_id=call.id,
            output_index=call.output_index,
            arguments="".join(call.arguments),
        )
        return [done, self._done(call.output_index, call.whole(status))]

    def _where(self, item: _TextItem) -> dict[str, Any]:
        return {"item_id": item.id, "output_index": item.output_index, "content_index": len(item.parts) - 1}

    def _part_event(self, kind: str, item: _TextItem, part: dict[str, Any]) -> Event:
        return self.event(kind, **self._where(item), part=part)

    def _added(self, output_index: int, item: dict[str, Any]) -> Event:
        return self.event("response.output_item.added", output_index=output_index, item=item)

    def _done(self, output_index: int, item: dict[str, Any]) -> Event:
        self.output[output_index] = item
        return self.event("response.output_item.done", output_index=output_index, item=item)


async def response_events(
    chunks: AsyncIterator[Chunk],
    request: TranslatedRequest,
    *,
    response_id: str | None = None,
    created_at: float | None = None,
) -> AsyncIterator[Event]:
    """Responses stream events for a chat stream, relayed as each chunk arrives."""
    state = ResponseEvents(request, response_id, created_at)
    for event in state.start():
        yield event
    try:
        async for chunk in chunks:
            for event in state.chunk(chunk):
                yield event
    except GatewayError as exc:
        for event in state.fail(exc):
            yield event
        return
    for event in state.finish():
        yield event
