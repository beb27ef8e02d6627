"""A whole answer sent as a stream: for answers that exist whole before the client gets a character
(best-of-n picks among whole candidates). The chunks are those of an upstream stream: per choice its role,
its texts (and tool calls) in one delta, its finish; then the usage chunk when the client asked for one,
and the ``guardrails`` report on the last chunk, as every guarded stream has it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.relay.streaming import Chunk

_COPIED = ("id", "created", "model", "system_fingerprint", "service_tier")


def whole_answer_chunks(body: dict[str, Any], chat: bool, include_usage: bool) -> list[Chunk]:
    """``body`` (an answer, with its ``guardrails`` report) as chunks, ``chat.completion.chunk`` or
    ``text_completion``.

    >>> body = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
    ...         "finish_reason": "stop"}], "usage": {"total_tokens": 3}, "guardrails": {"policy": "p"}}
    >>> [c["choices"] for c in whole_answer_chunks(body, chat=True, include_usage=False)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [[{'index': 0, 'delta': {'role': 'assistant'}, 'finish_reason': None}],
     [{'index': 0, 'delta': {'content': 'Hi'}, 'finish_reason': None}],
     [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}], []]
    """
    shell: Chunk = {key: body[key] for key in _COPIED if key in body}
    shell["object"] = "chat.completion.chunk" if chat else "text_completion"
    chunks = []
    for choice in body.get("choices") or ():
        index = choice.get("index", 0)
        logprobs = choice.get("logprobs")
        if chat:
            message = choice.get("message") or {}
            role = message.get("role", "assistant")
            chunks.append(_chunk(shell, {"index": index, "delta": {"role": role}}))
            delta = _delta(message)
            if delta:
                chunks.append(_chunk(shell, {"index": index, "delta": delta}, logprobs))
            finish: dict[str, Any] = {"index": index, "delta": {}}
        else:
            chunks.append(_chunk(shell, {"index": index, "text": choice.get("text") or ""}, logprobs))
            finish = {"index": index, "text": ""}
        chunks.append(_chunk(shell, {**finish, "finish_reason": choice.get("finish_reason")}))
    last: Chunk = {**shell, "choices": []}
    if include_usage and body.get("usage"):
        last["usage"] = body["usage"]
    if "guardrails" in body:
        last["guardrails"] = body["guardrails"]
    return [*chunks, last]


def _chunk(shell: Chunk, choice: dict[str, Any], logprobs: Any = None) -> Chunk:
    if logprobs is not None:
        choice["logprobs"] = logprobs
    choice.setdefault("finish_reason", None)
    return {**shell, "choices": [choice]}


def _delta(message: dict[str, Any]) -> dict[str, Any]:
    """A whole message as one delta: its texts, and its tool calls numbered as streamed ones are."""
    delta = {key: value for key, value in message.items() if key != "role" and value is not None}
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls) if isinstance(call, dict)]
    return delta


async def stream_of(chunks: list[Chunk]) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        yield chunk
