"""Forwarding one checked request to its upstream, streamed or not."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import msgspec
from litestar import Response
from litestar.response import Stream

from gateway.context import RequestContext
from gateway.fanout import merge_completions, merge_streams
from gateway.metrics import GatewayMetrics
from gateway.streaming import (
    Chunk,
    UsageTally,
    closing,
    decode_chunks,
    encode_sse,
    ensure_usage,
    sse_payloads,
    upstream_lines,
)
from gateway.upstream import Upstream, UpstreamPool, UpstreamResponse
from gateway.usage_meter import meter_answer, meter_stream

log = logging.getLogger("hhh.proxy")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class ForwardCall(msgspec.Struct, kw_only=True):
    path: str
    model: str
    raw: dict[str, Any]
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


class Proxy:
    def __init__(self, pool: UpstreamPool, metrics: GatewayMetrics) -> None:
        self.pool = pool
        self.metrics = metrics

    async def forward(self, context: RequestContext, call: ForwardCall) -> Response[Any]:
        """Forward with nothing in between: the answer as the upstream gave it."""
        if call.stream:
            return self.sse_response(await self.stream(context, call))
        return json_response(await self.complete(context, call))

    async def _prepare(self, context: RequestContext, call: ForwardCall) -> tuple[Upstream, list[bytes]]:
        upstream = await self.pool.route(call.model)
        context.model = call.model
        copies = call.n if call.n > 1 and not upstream.supports_n else 1
        bodies = [call.body] if copies == 1 else [msgspec.json.encode({**call.raw, "n": 1})] * copies
        return upstream, bodies

    async def complete(self, context: RequestContext, call: ForwardCall) -> UpstreamAnswer:
        upstream, bodies = await self._prepare(context, call)
        answers = await self._post_all(context, upstream, call.path, bodies)
        if call.n == 1:
            meter_answer(context, answers[0].content, call.prompt_chars)
            return UpstreamAnswer(answers[0].content, answers[0].content_type)
        decoded = [msgspec.json.decode(answer.content) for answer in answers]
        missing = call.n - sum(len(body.get("choices") or ()) for body in decoded)
        if missing > 0:
            log.warning("upstream %s ignores n; the gateway asks it n times from now on", upstream.name)
            upstream.supports_n = False
            single = msgspec.json.encode({**call.raw, "n": 1})
            extra = await self._post_all(context, upstream, call.path, [single] * missing)
            decoded += [msgspec.json.decode(answer.content) for answer in extra]
        content = msgspec.json.encode(decoded[0] if len(decoded) == 1 else merge_completions(decoded))
        meter_answer(context, content, call.prompt_chars)
        return UpstreamAnswer(content, answers[0].content_type)

    async def _post_all(
        self, context: RequestContext, upstream: Upstream, path: str, bodies: list[bytes]
    ) -> list[UpstreamResponse]:
        started = time.perf_counter()
        try:
            return await asyncio.gather(
                *(self.pool.post(upstream, path, body, context.request_id) for body in bodies)
            )
        finally:
            context.upstream_seconds += time.perf_counter() - started

    async def stream(self, context: RequestContext, call: ForwardCall) -> UpstreamStream:
        upstream, bodies = await self._prepare(context, call)
        started = time.perf_counter()
        opened = await asyncio.gather(
            *(self.pool.open_stream(upstream, call.path, body, context.request_id) for body in bodies),
            return_exceptions=True,
        )
        context.upstream_seconds += time.perf_counter() - started
        responses = [r for r in opened if isinstance(r, httpx.Response)]
        failure = next((r for r in opened if isinstance(r, BaseException)), None)
        if failure is not None:
            for response in responses:
                await response.aclose()
            raise failure

        on_transport_error = partial(self.pool.transport_error, upstream)
        streams = [decode_chunks(sse_payloads(upstream_lines(r, on_transport_error))) for r in responses]
        chunks = streams[0] if len(streams) == 1 else merge_streams(streams)
        if call.include_usage and not upstream.settings.supports_stream_usage:
            chunks = ensure_usage(chunks, UsageTally(call.prompt_chars))
        return UpstreamStream(meter_stream(chunks, context, call.prompt_chars), responses)

    def sse_response(self, stream: UpstreamStream, headers: dict[str, str] | None = None) -> Response[Any]:
        frames = closing(encode_sse(stream.chunks), stream.responses, self.metrics.stream_cancellations.inc)
        return Stream(frames, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})


def json_response(answer: UpstreamAnswer, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(answer.content, media_type=answer.content_type, status_code=200, headers=headers)
