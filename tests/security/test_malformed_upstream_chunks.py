"""Threat: an upstream (broken, or hostile) sends stream chunks of the wrong shape to crash the relay.

Before: ``{"choices":[{"index":0,"delta":"oops"}]}`` or ``{"choices":[42]}`` raised ``AttributeError``
in the output guard or the event assembler, and the client got a broken chunked body (the SDK's
``APIConnectionError``), or on the plain relay the garbage itself. Every path must instead end the
stream with an OpenAI-shaped error event and ``[DONE]``, after relaying what was well formed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from feedback.events import decode_event
from tests.support.redis_server import redis_server
from tests.support.relay_upstreams import (
    GATEWAY_KEY,
    MODEL,
    MODEL_NO_N,
    ScriptedUpstream,
    chunk,
    event_stream,
    relay_gateway,
    relay_settings,
    sse_frame,
)
from tests.support.sse import sse_events

MALFORMED = [
    pytest.param({"choices": [{"index": 0, "delta": "oops"}]}, id="delta-is-a-string"),
    pytest.param({"choices": [42]}, id="choice-is-a-number"),
    pytest.param({"choices": "all of them"}, id="choices-is-a-string"),
    pytest.param({"choices": [{"index": "0", "delta": {}}]}, id="index-is-a-string"),
    pytest.param({"choices": [{"index": 0, "delta": {"content": ["a"]}}]}, id="content-is-a-list"),
    pytest.param({"choices": [{"index": 0, "delta": {"tool_calls": [7]}}]}, id="tool-call-is-a-number"),
    pytest.param({"choices": [{"index": 0, "text": {"a": 1}}]}, id="text-is-an-object"),
    pytest.param({"choices": [], "usage": {"completion_tokens": "many"}}, id="usage-is-not-counted"),
]


def _hostile(bad: dict[str, Any]) -> ScriptedUpstream:
    async def answer(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        frames = [
            sse_frame(chunk("Hello ")),
            sse_frame(bad),
            sse_frame(chunk("after", "stop")),
            sse_frame("[DONE]"),
        ]
        return event_stream(frames)

    return ScriptedUpstream(answer)


def _chat(model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": True, **extra}


def _assert_ends_with_an_upstream_error(text: str) -> list[Any]:
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert error["type"] == "upstream_error"
    assert error["code"] == "upstream_stream_broken"
    assert "wrong shape" in error["message"]
    relayed = json.dumps(events[:-2])
    for garbage in ("oops", "42", "many"):
        assert garbage not in relayed  # the malformed chunk never went out
    return events


@pytest.mark.parametrize("bad", MALFORMED)
@pytest.mark.parametrize(
    "request_body",
    [
        pytest.param(_chat(), id="plain"),
        pytest.param(_chat(MODEL_NO_N, n=2), id="fanned-out"),
        pytest.param(_chat(MODEL_NO_N, stream_options={"include_usage": True}), id="usage-added"),
    ],
)
async def test_malformed_chunk_ends_an_unguarded_stream_with_an_error_event(
    bad: dict[str, Any], request_body: dict[str, Any]
) -> None:
    async with relay_gateway(_hostile(bad), relay_settings()) as client:
        response = await client.post("/v1/chat/completions", json=request_body)
    assert response.status_code == 200
    _assert_ends_with_an_upstream_error(response.text)


@pytest.mark.parametrize("bad", MALFORMED)
async def test_malformed_chunk_cannot_crash_the_output_guard(bad: dict[str, Any]) -> None:
    async with relay_gateway(_hostile(bad), relay_settings(guarded=True)) as client:
        response = await client.post("/v1/chat/completions", json=_chat())
    events = _assert_ends_with_an_upstream_error(response.text)
    text = "".join(c["delta"].get("content") or "" for e in events[:-2] for c in e.get("choices") or ())
    assert text == "Hello "  # what arrived before the bad chunk was still checked, and released


@pytest.mark.parametrize("bad", MALFORMED[:2])
async def test_malformed_chunk_cannot_crash_the_event_recorder(bad: dict[str, Any], tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        settings = relay_settings(redis_url=url, data_dir=str(tmp_path / "data"))
        async with relay_gateway(_hostile(bad), settings) as client:
            response = await client.post("/v1/chat/completions", json=_chat())
        _assert_ends_with_an_upstream_error(response.text)
        entries = redis.Redis.from_url(url).xrange("hhh:events")
    assert len(entries) == 1  # recorded, as what the client received: a cut-short answer
    event = decode_event(entries[0][1][b"event"])
    assert event.complete is False
    assert event.choices[0]["message"]["content"] == "Hello "


async def test_sdk_sees_an_api_error_not_a_broken_connection() -> None:
    async with relay_gateway(_hostile(MALFORMED[0].values[0]), relay_settings(guarded=True)) as client:
        sdk = openai.AsyncOpenAI(
            base_url=str(client.base_url).rstrip("/") + "/v1",
            api_key=GATEWAY_KEY,
            http_client=client,
            max_retries=0,
        )
        stream = await sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        with pytest.raises(openai.APIError, match="wrong shape") as raised:
            async for _ in stream:
                pass
    assert not isinstance(raised.value, openai.APIConnectionError)


async def test_chunks_with_unknown_fields_and_nulls_still_pass() -> None:
    """The check is on what the gateway reads, not a whitelist: servers' extra fields go through."""
    extra = {
        **chunk("fine"),
        "system_fingerprint": "fp",
        "choices": [{"index": 0, "delta": {"content": "fine", "extra": [1]}, "logprobs": None, "x": 1}],
    }
    frames = [
        sse_frame(extra),
        sse_frame({**chunk(""), "choices": [{"index": 0, "delta": None}]}),
        sse_frame("[DONE]"),
    ]

    async def answer(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        return event_stream(frames)

    async with relay_gateway(ScriptedUpstream(answer), relay_settings()) as client:
        events = sse_events((await client.post("/v1/chat/completions", json=_chat())).text)
    assert events[-1] == "[DONE]"
    assert all("error" not in e for e in events[:-1])
    assert events[0]["choices"][0]["delta"]["extra"] == [1]
