"""Forwarding one checked request to its upstream, streamed or not."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import anyio
import httpx
import msgspec
from litestar import Response
from litestar.response import Stream

from gateway.context import RequestContext
from gateway.metrics import GatewayMetrics
from gateway.relay.fanout import merge_completions, merge_streams
from gateway.relay.streaming import (
    Chunk,
    UsageTally,
    closing,
    decode_chunks,
    encode_sse,
    ensure_usage,
    sse_payloads,
    upstream_lines,
)
from gateway.relay.upstream import Upstream, UpstreamPool, UpstreamResponse
from gateway.relay.upstream_shapes import decode_answer
from gateway.relay.usage_meter import meter_answer, meter_stream
from gateway.server.shutdown import Drain
from gateway.settings import RelaySettings

log = logging.getLogger("hhh.proxy")

# Whose 200 answers carry choices (embeddings carry data).
COMPLETION_PATHS = frozenset({"/chat/completions", "/completions"})
T = TypeVar("T")
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class ForwardCall(msgspec.Struct, frozen=True, kw_only=True):
    """One call to an upstream: the body as it is sent, and what the relay must know of it."""

    path: str
    model: str
    body: bytes
    stream: bool = False
    n: int = 1
    include_usage: bool = False
    prompt_chars: int = 0


class UpstreamAnswer(msgspec.Struct):
    content: bytes
    content_type: str


class UpstreamStream(msgspec.Struct):
    """Chunks from one upstream stream (or n merged); ``responses`` must be closed when done."""

    chunks: AsyncIterator[Chunk]
    responses: list[httpx.Response]
    # Whether a later stage may read the chunks ahead of the client (``gateway.relay.read_ahead``): not
    # when a stage keeps state beside them that later stages read as they go (the native Responses relay).
    read_ahead: bool = True


class Proxy:
    def __init__(
        self,
        pool: UpstreamPool,
        metrics: GatewayMetrics,
        relay: RelaySettings | None = None,
        drain: Drain | None = None,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.relay = relay or RelaySettings()
        self.drain = drain or Drain(grace_s=0.0)  # ends streams at shutdown, with an error event

    async def forward(self, context: RequestContext, call: ForwardCall) -> Response[Any]:
        """Forward with nothing in between: the answer as the upstream gave it."""
        if call.stream:
            return self.sse_response(await self.stream(context, call))
        return json_response(await self.complete(context, call))

    async def _prepare(self, context: RequestContext, call: ForwardCall) -> tuple[Upstream, list[bytes]]:
        upstream = await self.pool.route(call.model)
        context.model = call.model
        copies = call.n if call.n > 1 and not upstream.supports_n else 1
        bodies = [call.body] if copies == 1 else [_one_choice(call.body)] * copies
        return upstream, bodies

    async def complete(self, context: RequestContext, call: ForwardCall) -> UpstreamAnswer:
        upstream, bodies = await self._prepare(context, call)
        answers = await self._post_all(context, upstream, call.path, bodies)
        # Checked here, once: a 200 that is not an answer's shape is the upstream's failure (502), and
        # every later stage (guards, fan-out, recording) can read the answer without checking it again.
        completion = call.path in COMPLETION_PATHS
        decoded = [decode_answer(answer.content, completion) for answer in answers]
        if call.n == 1:
            meter_answer(context, answers[0].content, call.prompt_chars)
            return UpstreamAnswer(answers[0].content, answers[0].content_type)
        missing = call.n - sum(len(body.get("choices") or ()) for body in decoded)
        if missing > 0:
            log.warning("upstream %s ignores n; the gateway asks it n times from now on", upstream.name)
            upstream.supports_n = False
            single = _one_choice(call.body)
            extra = await self._post_all(context, upstream, call.path, [single] * missing)
            decoded += [decode_answer(answer.content, completion) for answer in extra]
        content = msgspec.json.encode(decoded[0] if len(decoded) == 1 else merge_completions(decoded))
        meter_answer(context, content, call.prompt_chars)
        return UpstreamAnswer(content, answers[0].content_type)

    async def _post_all(
        self, context: RequestContext, upstream: Upstream, path: str, bodies: list[bytes]
    ) -> list[UpstreamResponse]:
        started = time.perf_counter()
        tasks = [
            asyncio.ensure_future(self.pool.post(upstream, path, body, context.request_id)) for body in bodies
        ]
        try:
            return await _all_or_none(tasks)
        finally:
            context.upstream_seconds += time.perf_counter() - started

    async def stream(
        self,
        context: RequestContext,
        call: ForwardCall,
        decode: Callable[[AsyncIterator[str]], AsyncIterator[Chunk]] = decode_chunks,
    ) -> UpstreamStream:
        """``decode``: each event's data → chat chunks (another API's events are read into them)."""
        upstream, bodies = await self._prepare(context, call)
        started = time.perf_counter()
        try:
            responses = await self._open_all(upstream, call.path, bodies, context.request_id)
        finally:
            context.upstream_seconds += time.perf_counter() - started

        on_transport_error = partial(self.pool.transport_error, upstream)
        limit = self.relay.max_event_bytes
        streams = [
            decode(sse_payloads(upstream_lines(r, on_transport_error, limit, upstream.scrub.text), limit))
            for r in responses
        ]
        chunks = streams[0] if len(streams) == 1 else merge_streams(streams)
        if call.include_usage and not upstream.settings.supports_stream_usage:
            chunks = ensure_usage(chunks, UsageTally(call.prompt_chars))
        return UpstreamStream(meter_stream(chunks, context, call.prompt_chars), responses)

    async def _open_all(
        self, upstream: Upstream, path: str, bodies: list[bytes], request_id: str
    ) -> list[httpx.Response]:
        """Open one stream per body, or none: on a failure, or when the client left (cancelled), the ones
        already open are closed, so no upstream keeps generating for nobody."""
        tasks = [
            asyncio.ensure_future(self.pool.open_stream(upstream, path, body, request_id)) for body in bodies
        ]
        try:
            return await _all_or_none(tasks)
        except BaseException:
            with anyio.CancelScope(shield=True):
                for task in tasks:
                    if not task.cancelled() and task.exception() is None:
                        await task.result().aclose()
            raise

    def sse_response(
        self,
        stream: UpstreamStream,
        headers: dict[str, str] | None = None,
        encode: Callable[[AsyncIterator[Chunk]], AsyncIterator[bytes]] = encode_sse,
    ) -> Response[Any]:
        """Chunks as server-sent events (``encode``: chat's ``data:`` frames and ``[DONE]`` by default)."""
        chunks = self.drain.relay(stream.chunks)
        frames = closing(encode(chunks), stream.responses, self.metrics.stream_cancellations.inc)
        return Stream(frames, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})


async def _all_or_none(tasks: Sequence[asyncio.Future[T]]) -> list[T]:
    """Every task's result. On the first failure, or when cancelled (the client left), the other tasks
    are cancelled and awaited: no upstream call outlives the request that made it."""
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _one_choice(body: bytes) -> bytes:
    """The body asking for one choice: for upstreams that ignore ``n`` and are asked n times."""
    return msgspec.json.encode({**msgspec.json.decode(body), "n": 1})


def json_response(answer: UpstreamAnswer, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(answer.content, media_type=answer.content_type, status_code=200, headers=headers)
