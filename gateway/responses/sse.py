"""Responses stream events → server-sent-event frames, as OpenAI sends them: ``event: <type>`` and the
event as ``data``, no ``[DONE]`` at the end (the SDKs stop at ``response.completed``).

A failure in some stage after the stream began still ends it well-formed: one ``error`` event, its
``sequence_number`` the next one, never a cut connection (see ``gateway.relay.streaming.encode_sse``, the
chat path's twin).

>>> import asyncio
>>> async def one():
...     yield {"type": "response.in_progress", "sequence_number": 1}
>>> async def frames():
...     return [frame async for frame in sse_frames(one())]
>>> asyncio.run(frames())
[b'event: response.in_progress\\ndata: {"type":"response.in_progress","sequence_number":1}\\n\\n']
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from gateway.errors import GatewayError

log = logging.getLogger("hhh.stream")


def frame(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + msgspec.json.encode(event) + b"\n\n"


async def sse_frames(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    sequence = -1
    try:
        async for event in events:
            sequence = event["sequence_number"]
            yield frame(event)
    except GatewayError as exc:  # a stage that does not end its own failures (``response_events`` does)
        log.warning("responses stream ended by a failure: %s", exc.message)
        code = None if exc.code is None else str(exc.code)
        yield frame(_error(sequence + 1, exc.message, code, exc.param))
    except Exception:  # a bug in some stage: the client still gets a well-formed end, operators the trace
        log.exception("responses stream relay failed")
        message = "The gateway failed while relaying the stream; it has been logged."
        yield frame(_error(sequence + 1, message, "server_error", None))


def _error(sequence: int, message: str, code: str | None, param: str | None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "param": param, "sequence_number": sequence}
