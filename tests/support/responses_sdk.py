"""The official ``openai`` SDK as the judge of what ``gateway.responses`` makes: its pydantic types validate
each object and event, and its client reads them off the wire (an httpx2 mock transport: no sockets)."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pydantic
from openai.lib.streaming.responses import ResponseStreamEvent as SdkStreamEvent
from openai.types.responses import Response, ResponseStreamEvent

from gateway.responses.sse import sse_frames

_UNION = typing.get_args(typing.get_args(ResponseStreamEvent)[0])
EVENT_CLASSES: dict[str, type[pydantic.BaseModel]] = {
    typing.get_args(cls.model_fields["type"].annotation)[0]: cls for cls in _UNION
}
_ANY_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def validate_event(event: dict[str, Any]) -> pydantic.BaseModel:
    """An event as the SDK types it: its own class by ``type``, strictly, and the union agrees."""
    cls = EVENT_CLASSES[event["type"]]
    typed = cls.model_validate(event)
    assert type(_ANY_EVENT.validate_python(event)) is cls
    return typed


def validate_response(body: dict[str, Any]) -> Response:
    return Response.model_validate(body)


def _client(handler: Any) -> openai.AsyncOpenAI:
    transport = httpx2.MockTransport(handler)
    return openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://gateway.test/v1",
        http_client=httpx2.AsyncClient(transport=transport),
        max_retries=0,
    )


async def sdk_create(body: bytes) -> Response:
    """``client.responses.create`` (not streamed) reading ``body`` as the gateway's answer."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=body)

    async with _client(handler) as client:
        return await client.responses.create(model="m", input="hi")


async def sse_bytes(events: AsyncIterator[dict[str, Any]]) -> bytes:
    return b"".join([frame async for frame in sse_frames(events)])


async def sdk_stream(body: bytes, **create: Any) -> tuple[list[SdkStreamEvent[Any]], Any]:
    """``client.responses.stream`` (the SDK's stream helper and accumulator) reading ``body`` as the
    gateway's server-sent events: the events it yields, and its final response (or the error it raised)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    events: list[SdkStreamEvent[Any]] = []
    client = _client(handler)
    async with client, client.responses.stream(**{"model": "m", "input": "hi", **create}) as stream:
        async for event in stream:
            events.append(event)
        try:
            final: Any = await stream.get_final_response()
        except RuntimeError as exc:  # no response.completed: the SDK says so
            final = exc
    return events, final
