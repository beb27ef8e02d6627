"""The streaming relay, as small async generators that compose::

    upstream_lines(response)        bytes off the socket → text lines (transport errors → UpstreamError),
                                    each capped, and scrubbed of the upstream's key
      → sse_payloads(lines)         lines → each event's ``data`` (capped too)
      → decode_chunks(payloads)     data → chunk objects of a checked shape, up to ``[DONE]``
      → [stages that read or rewrite chunks: output guards (behind a bounded read-ahead,
                                    ``gateway.relay.read_ahead``), recording]
      → encode_sse(chunks)          chunk objects → ``data: …`` frames, then ``data: [DONE]``;
                                    a failure becomes one final OpenAI-shaped error event

Each stage pulls from the one before, so nothing is buffered beyond one event (but for the output
guards' read-ahead, which is bounded and closes its source), and a cancelled consumer (client gone)
cancels every stage up to the upstream socket.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import msgspec

from gateway.errors import GatewayError, UpstreamError, UpstreamStatus, UpstreamStreamBroken
from gateway.relay.line_reader import LineReader, too_large
from gateway.relay.upstream_shapes import check_chunk

log = logging.getLogger("hhh.stream")

DONE = "[DONE]"
DONE_FRAME = b"data: [DONE]\n\n"

Chunk = dict[str, Any]


def _unchanged(line: str) -> str:
    return line


async def upstream_lines(
    response: httpx.Response,
    on_transport_error: Callable[[httpx.HTTPError], UpstreamError],
    max_line_bytes: int,
    scrub: Callable[[str], str] = _unchanged,
) -> AsyncIterator[str]:
    """Lines of at most ``max_line_bytes``, each scrubbed of the upstream's key (see
    ``gateway.relay.scrub``)."""
    reader = LineReader(max_line_bytes)
    try:
        async for data in response.aiter_bytes():
            for line in reader.feed(data):
                yield scrub(line)
    except httpx.HTTPError as exc:
        raise on_transport_error(exc) from None
    for line in reader.close():
        yield scrub(line)


async def sse_payloads(lines: AsyncIterator[str], max_event_bytes: int) -> AsyncIterator[str]:
    """Server-sent-event lines → the ``data`` of each event (multi-line data joined; comments dropped).

    One event's data is capped like one line: an upstream that never ends its event must not grow it
    without bound.
    """
    data: list[str] = []
    size = 0
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data, size = [], 0
            continue
        field, _, value = line.partition(":")
        if field == "data":
            size += len(line) + 1  # as read, so the cap bounds what was taken off the socket
            if size > max_event_bytes:
                raise too_large(max_event_bytes, "an event")
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


async def decode_chunks(payloads: AsyncIterator[str]) -> AsyncIterator[Chunk]:
    """Data payloads → chunk objects. The stream must end with ``[DONE]``; anything else is a failure.

    Every chunk is checked against the shape later stages read (``gateway.relay.upstream_shapes``), so none of
    them can be crashed by an upstream's malformed chunk.
    """
    async for payload in payloads:
        if payload == DONE:
            return
        try:
            chunk = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            raise UpstreamStreamBroken("The upstream sent a malformed stream chunk.") from None
        if not isinstance(chunk, dict):
            raise UpstreamStreamBroken("The upstream sent a stream chunk that is not a JSON object.")
        if "error" in chunk:
            raise UpstreamStatus(502, payload.encode())
        check_chunk(chunk)
        yield chunk
    raise UpstreamStreamBroken("The upstream closed the stream before it finished (no [DONE]).")


def error_frame(error: GatewayError) -> bytes:
    return b"data: " + msgspec.json.encode(error.envelope()) + b"\n\n"


async def encode_sse(chunks: AsyncIterator[Chunk]) -> AsyncIterator[bytes]:
    """Chunk objects → SSE frames. A failure mid-stream ends it with an error event, never silently."""
    encode = msgspec.json.encode
    try:
        async for chunk in chunks:
            yield b"data: " + encode(chunk) + b"\n\n"
    except GatewayError as exc:
        log.warning("stream ended by an upstream failure: %s", exc.message)
        yield error_frame(exc)
    except Exception:  # a bug in some stage: the client still gets a well-formed end, operators the trace
        log.exception("stream relay failed")
        yield error_frame(GatewayError("The gateway failed while relaying the stream; it has been logged."))
    yield DONE_FRAME


async def closing(
    frames: AsyncIterator[bytes], responses: list[httpx.Response], on_disconnect: Callable[[], None]
) -> AsyncIterator[bytes]:
    """Relay ``frames``; however the relay ends, close the upstream responses.

    When the client disconnects, the server cancels this generator; closing the upstream response then
    drops its connection, which is how an OpenAI-compatible server learns to stop generating.
    """
    finished = False
    try:
        async for frame in frames:
            yield frame
        finished = True
    finally:
        if not finished:
            on_disconnect()
        await close_responses(responses)


async def close_responses(responses: list[httpx.Response]) -> None:
    """Close upstream responses (again is harmless): the connection drops, and the server stops."""
    # Shielded: inside a cancelled scope any un-shielded await would be cancelled before it closes.
    with anyio.CancelScope(shield=True):
        for response in responses:
            await response.aclose()


class UsageTally:
    """Counts what a stream carried, to synthesise ``usage`` for upstreams that never send it."""

    def __init__(self, prompt_chars: int) -> None:
        self.prompt_chars = prompt_chars
        self.completion_tokens = 0
        self.seen_usage = False
        self.last_chunk: Chunk | None = None

    def observe(self, chunk: Chunk) -> None:
        self.last_chunk = chunk
        if chunk.get("usage"):
            self.seen_usage = True
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content") or delta.get("tool_calls") or choice.get("text"):
                self.completion_tokens += 1  # servers that omit usage stream one token per chunk

    def usage_chunk(self) -> Chunk:
        # About four characters a token in English: an estimate, and the chunk says so.
        prompt_tokens = max(1, round(self.prompt_chars / 4))
        template = self.last_chunk or {}
        return {
            "id": template.get("id", ""),
            "object": template.get("object", "chat.completion.chunk"),
            "created": template.get("created", 0),
            "model": template.get("model", ""),
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": prompt_tokens + self.completion_tokens,
                "estimated": True,
            },
        }


async def ensure_usage(chunks: AsyncIterator[Chunk], tally: UsageTally) -> AsyncIterator[Chunk]:
    """Pass chunks on; if the upstream sent no usage chunk by the end, add one (include_usage asked)."""
    async for chunk in chunks:
        tally.observe(chunk)
        yield chunk
    if not tally.seen_usage:
        yield tally.usage_chunk()
