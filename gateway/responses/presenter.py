"""A Responses call as the guarded chat path serves it: the ``Presenter`` (``gateway.guarded.presentation``)
that reshapes the chat answer into a ``Response`` or Responses stream events, and the errors and reports
renamed from chat paths (``messages[2].content``) to the parameters the client sent (``input[1]...``).

The answer's id (``resp_…``) is made up front: it is what the client sees, and what it sends back as
feedback, so the recorded event carries it too."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from gateway.errors import ContentFiltered, GatewayError
from gateway.responses.request import TranslatedRequest
from gateway.responses.response import new_id, response_from_chat
from gateway.responses.sse import sse_frames
from gateway.responses.stream import response_events

Chunk = dict[str, Any]


class ResponsesPresenter:
    def __init__(self, translated: TranslatedRequest) -> None:
        self.translated = translated
        self._id = new_id("resp")
        self._created_at = time.time()

    @property
    def completion_id(self) -> str:
        return self._id

    def whole(self, body: dict[str, Any]) -> dict[str, Any]:
        if "guardrails" in body:
            body = {**body, "guardrails": relabelled(body["guardrails"], self.translated.param_of)}
        return response_from_chat(body, self.translated, response_id=self._id, created_at=self._created_at)

    def frames(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[bytes]:
        events = response_events(
            self._relabelled(chunks), self.translated, response_id=self._id, created_at=self._created_at
        )
        return sse_frames(events)

    async def _relabelled(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        async for chunk in chunks:
            if "guardrails" in chunk:
                chunk = {**chunk, "guardrails": relabelled(chunk["guardrails"], self.translated.param_of)}
            yield chunk


def relabelled(report: Any, param_of: Callable[[str], str]) -> Any:
    """The ``guardrails`` report with its input stage's places named as the client's parameters (the
    output stage's ``choices[0]`` / ``message.content`` stay: they name the chat answer the Response came
    from). Plain data either way: a struct is turned into it.

    >>> relabelled({"input": {"guards": [{"spans": [{"where": "messages[0].content"}]}]}}, str.upper)
    {'input': {'guards': [{'spans': [{'where': 'MESSAGES[0].CONTENT'}]}]}}
    """
    plain = msgspec.to_builtins(report)
    stage = plain.get("input") if isinstance(plain, dict) else None
    for guard in (stage or {}).get("guards") or ():
        for found in (*(guard.get("spans") or ()), *(guard.get("claims") or ())):
            if isinstance(found.get("where"), str):
                found["where"] = param_of(found["where"])
    return plain


def client_error(exc: GatewayError, translated: TranslatedRequest) -> GatewayError:
    """``exc``, raised on the chat path, renamed in place to the Responses parameter the client sent. An
    input guard's block stays a 400 ``content_filter``, its report relabelled."""
    if isinstance(exc, ContentFiltered):
        plain = relabelled(exc.guardrails, translated.param_of)
        exc.guardrails = msgspec.convert(plain, type(exc.guardrails))
    if exc.param is not None:
        param = translated.param_of(exc.param)
        exc.message = exc.message.replace(exc.param, param)
        exc.args = (exc.message,)
        exc.param = param
    return exc
