"""A native upstream's Responses answer → the chat completion (or chunks) the guarded chat path reads.

The reverse of ``gateway.responses.response`` and ``gateway.responses.stream``: the output guards, the
stream windows, revision, recording and pseudonym restoring all work on chat answers, so a native answer
is read as one, guarded, and written back as a Response by the same writers as a translated one.

What maps: ``message`` items' ``output_text`` parts → ``content`` (joined), ``refusal`` parts →
``refusal``; ``reasoning`` items' texts (summary and content) → ``reasoning_content``; ``function_call``
items → ``tool_calls`` (``call_id`` kept); ``status`` and ``incomplete_details`` → ``finish_reason``; usage
→ chat usage. An output item of any other type (a hosted tool's call) carries text no guard here can
place: the answer is refused as the upstream's failure (502), never relayed unguarded. Likewise a stream
event the gateway does not know.

>>> chat = chat_completion({"id": "resp_1", "created_at": 1, "model": "m", "status": "completed",
...     "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}]})
>>> chat["id"], chat["choices"][0]["message"]["content"], chat["choices"][0]["finish_reason"]
('resp_1', 'Hi', 'stop')
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from gateway.errors import UpstreamBadResponse, UpstreamStatus, UpstreamStreamBroken

Chunk = dict[str, Any]

_FINISH = {"max_output_tokens": "length", "content_filter": "content_filter"}
# Stream events that carry nothing the chat chunks need: the deltas carry the text, ``response.completed``
# (or ``incomplete``) the end. A ``.done`` event's text is used only where no delta came before it.
_SKIPPED = frozenset(
    {
        "response.in_progress",
        "response.queued",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_item.done",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_part.done",
        "keepalive",
    }
)
_TEXT_DELTAS = {
    "response.output_text": "content",
    "response.refusal": "refusal",
    "response.reasoning_text": "reasoning_content",
    "response.reasoning_summary_text": "reasoning_content",
}
_FINAL = ("response.completed", "response.incomplete")


def _strings(parts: Any, kind: str, key: str = "text") -> list[str]:
    listed = parts if isinstance(parts, list) else []
    return [
        part[key]
        for part in listed
        if isinstance(part, dict) and part.get("type") == kind and isinstance(part.get(key), str)
    ]


def finish_reason(response: dict[str, Any], called: bool) -> str:
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    if response.get("status") == "incomplete" and isinstance(reason, str):
        return _FINISH.get(reason, "stop")
    return "tool_calls" if called else "stop"


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """The Responses API's usage in chat's names (``gateway.responses.response.usage_of`` reverses it)."""
    if not isinstance(usage, dict):
        return None
    keys = ("input_tokens", "output_tokens", "total_tokens")
    counts = {key: usage[key] if isinstance(usage.get(key), int) else 0 for key in keys}
    details = usage.get("output_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    cached_details = usage.get("input_tokens_details")
    cached = cached_details.get("cached_tokens") if isinstance(cached_details, dict) else None
    return {
        "prompt_tokens": counts["input_tokens"],
        "completion_tokens": counts["output_tokens"],
        "total_tokens": counts["total_tokens"] or counts["input_tokens"] + counts["output_tokens"],
        "prompt_tokens_details": {"cached_tokens": cached if isinstance(cached, int) else 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning if isinstance(reasoning, int) else 0},
    }


def chat_message(output: Any) -> dict[str, Any]:
    """A Response's output items → one assistant message (raises for an item no guard can read)."""
    content: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, item in enumerate(output if isinstance(output, list) else ()):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            content += _strings(item.get("content"), "output_text")
            refusals += _strings(item.get("content"), "refusal", "refusal")
        elif kind == "reasoning":
            reasoning += _strings(item.get("summary"), "summary_text")
            reasoning += _strings(item.get("content"), "reasoning_text")
        elif kind == "function_call":
            calls.append(_tool_call(item))
        else:
            raise UpstreamBadResponse(
                f"The upstream answered output[{index}] of type {str(kind)[:60]!r}, which this gateway's "
                "guards cannot read; it was not relayed."
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) if content else None}
    if refusals:
        message["refusal"] = "".join(refusals)
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(item: dict[str, Any]) -> dict[str, Any]:
    name, arguments = item.get("name"), item.get("arguments")
    return {
        "id": item.get("call_id") if isinstance(item.get("call_id"), str) else None,
        "type": "function",
        "function": {
            "name": name if isinstance(name, str) else "",
            "arguments": arguments if isinstance(arguments, str) else "",
        },
    }


def chat_completion(response: dict[str, Any]) -> dict[str, Any]:
    """A whole Response → a chat completion under the Response's id."""
    message = chat_message(response.get("output"))
    created = response.get("created_at")
    completion: dict[str, Any] = {
        "id": response.get("id"),
        "object": "chat.completion",
        "created": int(created) if isinstance(created, int | float) else 0,
        "model": response.get("model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason(response, "tool_calls" in message),
            }
        ],
    }
    usage = chat_usage(response.get("usage"))
    if usage is not None:
        completion["usage"] = usage
    return completion


class ChunkReader:
    """A native stream's events → chat chunks, one event at a time. ``response`` is the upstream's
    Response as its last event carried it (``response.created`` first, the final one last)."""

    def __init__(self) -> None:
        self.response: dict[str, Any] = {}
        self.final = False
        # Keyed by the upstream's ids as strings: whatever JSON it sends there, a key can be made of it.
        self._calls: dict[str, int] = {}  # function_call item id → chat tool-call index
        self._streamed: set[tuple[str, str]] = set()  # (item id, content index) that had deltas
        self._called_done: set[str] = set()

    def chunk(self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> Chunk:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return {
            "id": self.response.get("id"),
            "object": "chat.completion.chunk",
            "model": self.response.get("model"),
            "choices": choices,
            **extra,
        }

    def read(self, event: dict[str, Any]) -> list[Chunk]:
        kind = event.get("type")
        if isinstance(event.get("response"), dict):
            self.response = event["response"]
        if kind == "response.created":
            return [self.chunk({"role": "assistant"})]
        if kind in _FINAL:
            self.final = True
            called = bool(self._calls)
            out = [self.chunk({}, finish_reason(self.response, called))]
            usage = chat_usage(self.response.get("usage"))
            return out + ([self.chunk(None, usage=usage)] if usage is not None else [])
        if kind in ("response.failed", "error"):
            raise UpstreamStatus(502, msgspec.json.encode(_failure(event)))
        if kind == "response.output_item.added":
            return self._added(event.get("item"))
        if kind == "response.function_call_arguments.delta":
            return self._arguments(str(event.get("item_id")), event.get("delta"))
        if kind == "response.function_call_arguments.done":
            return self._arguments_done(event)
        if isinstance(kind, str):
            prefix, _, step = kind.rpartition(".")
            field = _TEXT_DELTAS.get(prefix)
            if field is not None and step in ("delta", "done"):
                return self._text(event, field, step)
            if kind in _SKIPPED:
                return []
        raise UpstreamStreamBroken(
            f"The upstream sent a stream event of type {str(kind)[:60]!r}, which this gateway's guards "
            "cannot read; the stream was ended."
        )

    def _added(self, item: Any) -> list[Chunk]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind in ("message", "reasoning"):
            return []
        if kind != "function_call":
            raise UpstreamStreamBroken(
                f"The upstream began an output item of type {str(kind)[:60]!r}, which this gateway's guards "
                "cannot read; the stream was ended."
            )
        assert isinstance(item, dict)
        index = self._calls[str(item.get("id"))] = len(self._calls)
        call = _tool_call(item)
        call["function"]["arguments"] = ""  # the arguments come as deltas (or with the done event)
        return [self.chunk({"tool_calls": [{"index": index, **call}]})]

    def _arguments(self, item_id: str, delta: Any) -> list[Chunk]:
        index = self._calls.get(item_id)
        if index is None:
            raise UpstreamStreamBroken("The upstream streamed arguments of a function call it never began.")
        if not isinstance(delta, str) or not delta:
            return []
        self._called_done.add(item_id)
        return [self.chunk({"tool_calls": [{"index": index, "function": {"arguments": delta}}]})]

    def _arguments_done(self, event: dict[str, Any]) -> list[Chunk]:
        item_id = str(event.get("item_id"))
        if item_id in self._called_done:
            return []
        return self._arguments(item_id, event.get("arguments"))  # whole arguments, no deltas before

    def _text(self, event: dict[str, Any], field: str, step: str) -> list[Chunk]:
        place = (str(event.get("item_id")), str(event.get("content_index", event.get("summary_index"))))
        if step == "delta":
            text = event.get("delta")
            self._streamed.add(place)
        elif place in self._streamed:
            return []
        else:  # a done event with no deltas before it: its whole text
            text = event.get("refusal" if field == "refusal" else "text")
        return [self.chunk({field: text})] if isinstance(text, str) and text else []


def _failure(event: dict[str, Any]) -> dict[str, Any]:
    """An ``error`` or ``response.failed`` event as OpenAI's error envelope."""
    error = event if event.get("type") == "error" else (event.get("response") or {}).get("error")
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    return {
        "error": {
            "message": message if isinstance(message, str) else "The upstream's response failed.",
            "type": "upstream_error",
            "param": None,
            "code": error.get("code") if isinstance(error.get("code"), str) else None,
        }
    }


async def chat_chunks(payloads: AsyncIterator[str], reader: ChunkReader) -> AsyncIterator[Chunk]:
    """A native stream's ``data`` payloads → chat chunks, up to its final event (``[DONE]`` is not
    needed, and ends it too); a stream that stops before the final event is the upstream's failure."""
    async for payload in payloads:
        if payload == "[DONE]":
            break
        try:
            event = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            raise UpstreamStreamBroken("The upstream sent a malformed stream event.") from None
        if not isinstance(event, dict):
            raise UpstreamStreamBroken("The upstream sent a stream event that is not a JSON object.")
        for chunk in reader.read(event):
            yield chunk
        if reader.final:
            return
    raise UpstreamStreamBroken("The upstream closed the stream before it finished (no response.completed).")
