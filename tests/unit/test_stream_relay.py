"""Streaming through the gateway: relay, [DONE], include_usage, n, and failures mid-stream."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.support.fake_upstream import FakeUpstream
from tests.support.sse import sse_events

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "Hi there"}], "stream": True}


def _text(events: list[Any], index: int = 0) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if isinstance(event, dict)
        for choice in event.get("choices", [])
        if choice["index"] == index
    )


async def test_stream_is_relayed_with_done(client: AsyncTestClient[Any], fake_upstream: FakeUpstream) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert _text(events) == "Hello from the fake."
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_include_usage_is_passed_on(client: AsyncTestClient[Any]) -> None:
    response = await client.post(
        "/v1/chat/completions", json={**CHAT, "stream_options": {"include_usage": True}}
    )
    usage_event = sse_events(response.text)[-2]
    assert usage_event["choices"] == []
    assert usage_event["usage"]["completion_tokens"] == 4


async def test_include_usage_is_added_for_an_upstream_without_it(client: AsyncTestClient[Any]) -> None:
    body = {**CHAT, "model": "llama-like", "stream_options": {"include_usage": True}}
    events = sse_events((await client.post("/v1/chat/completions", json=body)).text)
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"] == []
    usage = events[-2]["usage"]
    assert usage["estimated"] is True
    assert usage["completion_tokens"] == 4  # four content deltas
    assert usage["prompt_tokens"] == 2  # "Hi there": 8 characters, about 2 tokens
    assert usage["total_tokens"] == 6


async def test_no_usage_chunk_unless_asked(client: AsyncTestClient[Any]) -> None:
    events = sse_events((await client.post("/v1/chat/completions", json=CHAT)).text)
    assert all("usage" not in event for event in events if isinstance(event, dict))


async def test_stream_n_is_merged_for_an_upstream_declared_without_n(
    client: AsyncTestClient[Any], fake_upstream: FakeUpstream
) -> None:
    response = await client.post("/v1/chat/completions", json={**CHAT, "model": "llama-like", "n": 2})
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert _text(events, 0) == _text(events, 1) == "Hello from the fake."
    assert len({event["id"] for event in events if isinstance(event, dict)}) == 1
    assert [b["n"] for b in fake_upstream.bodies] == [1, 1]


async def test_upstream_failure_mid_stream_ends_with_an_error_event(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/v1/chat/completions", json={**CHAT, "model": "broken-stream"})
    events = sse_events(response.text)
    assert _text(events) == "Hello from the fake."  # what arrived before the failure was relayed
    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert error["type"] == "upstream_error"
    assert error["code"] == "upstream_unreachable"


async def test_stream_that_ends_without_done_is_reported(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/v1/chat/completions", json={**CHAT, "model": "unterminated-stream"})
    events = sse_events(response.text)
    assert events[-2]["error"]["code"] == "upstream_stream_broken"


async def test_upstream_error_before_the_stream_keeps_its_status(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/v1/chat/completions", json={**CHAT, "model": "enveloped-429"})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit"
