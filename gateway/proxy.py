"""Forwarding one checked request to its upstream, streamed or not."""

from __future__ import annotations

import asyncio
import logging
import time
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
    UsageTally,
    closing,
    decode_chunks,
    encode_sse,
    ensure_usage,
    sse_payloads,
    upstream_lines,
)
from gateway.upstream import Upstream, UpstreamPool

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


class Proxy:
    def __init__(self, pool: UpstreamPool, metrics: GatewayMetrics) -> None:
        self.pool = pool
        self.metrics = metrics

    async def forward(self, context: RequestContext, call: ForwardCall) -> Response[Any]:
        upstream = await self.pool.route(call.model)
        context.model = call.model
        copies = call.n if call.n > 1 and not upstream.supports_n else 1
        bodies = [call.body] if copies == 1 else [msgspec.json.encode({**call.raw, "n": 1})] * copies
        if call.stream:
            return await self._stream(context, upstream, call, bodies)
        return await self._json(context, upstream, call, bodies)

    async def _json(
        self, context: RequestContext, upstream: Upstream, call: ForwardCall, bodies: list[bytes]
    ) -> Response[Any]:
        started = time.perf_counter()
        try:
            answers = await asyncio.gather(
                *(self.pool.post(upstream, call.path, body, context.request_id) for body in bodies)
            )
        finally:
            context.upstream_seconds += time.perf_counter() - started
        bodies_in = [msgspec.json.decode(a.content) for a in answers] if call.n > 1 else []
        if len(answers) == 1 and call.n > 1 and len(bodies_in[0].get("choices") or ()) < call.n:
            log.warning("upstream %s ignores n; the gateway will ask it n times instead", upstream.name)
            upstream.supports_n = False
            return await self.forward(context, call)
        if len(answers) == 1:
            content = answers[0].content
        else:
            content = msgspec.json.encode(merge_completions(bodies_in))
        return Response(content=content, media_type=answers[0].content_type, status_code=answers[0].status_code)

    async def _stream(
        self, context: RequestContext, upstream: Upstream, call: ForwardCall, bodies: list[bytes]
    ) -> Response[Any]:
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
        frames = closing(encode_sse(chunks), responses, self.metrics.stream_cancellations.inc)
        return Stream(frames, media_type="text/event-stream", headers=SSE_HEADERS)
