"""Threat: an upstream that echoes the headers it received shows clients the gateway's upstream key.

Before: an upstream error body quoting ``Authorization: Bearer sk-…`` reached the client as it was. The
upstream's key must be scrubbed from everything relayed: error bodies (enveloped or plain text),
errors when a stream opens, error events mid-stream, and answers themselves.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.relay_upstreams import (
    MODEL,
    MODEL_NO_N,
    UPSTREAM_KEY,
    ScriptedUpstream,
    chunk,
    completion,
    event_stream,
    relay_gateway,
    relay_settings,
    sse_frame,
)
from tests.support.sse import sse_events


def _echoed(request: httpx.Request) -> str:
    return f"Invalid credentials: {request.headers['authorization']}"


async def _enveloped_401(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    error = {"message": _echoed(request), "type": "auth", "param": None, "code": "invalid_key"}
    return httpx.Response(401, json={"error": error, "debug": dict(request.headers)})


async def _plain_text_500(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(500, text=f"Traceback ...\nheaders: {dict(request.headers)}\n{_echoed(request)}")


async def _error_event_mid_stream(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    error = {"error": {"message": _echoed(request), "type": "server_error", "code": 500}}
    return event_stream([sse_frame(chunk("Hi ")), sse_frame(error), sse_frame("[DONE]")])


async def _answer_quoting_the_key(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    if body.get("stream"):
        return event_stream([sse_frame(chunk(_echoed(request), "stop")), sse_frame("[DONE]")])
    return httpx.Response(200, json=completion(_echoed(request)))


def _request(model: str, stream: bool) -> dict[str, Any]:
    n = 2 if model == MODEL_NO_N else 1  # the fan-out path: n copies asked, answers merged
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": stream, "n": n}


def _visible(response: httpx.Response) -> str:
    """What a client sees: the body, plus a stream's text joined (a guard may split it into windows)."""
    if not response.headers["content-type"].startswith("text/event-stream"):
        return response.text
    events = [e for e in sse_events(response.text) if isinstance(e, dict)]
    deltas = [c.get("delta") or {} for e in events for c in e.get("choices") or ()]
    return response.text + "".join(d.get("content") or "" for d in deltas)


@pytest.mark.parametrize(
    ("handler", "stream"),
    [
        pytest.param(_enveloped_401, False, id="enveloped-error"),
        pytest.param(_enveloped_401, True, id="enveloped-error-opening-a-stream"),
        pytest.param(_plain_text_500, False, id="plain-text-error"),
        pytest.param(_plain_text_500, True, id="plain-text-error-opening-a-stream"),
        pytest.param(_error_event_mid_stream, True, id="error-event-mid-stream"),
        pytest.param(_answer_quoting_the_key, False, id="answer"),
        pytest.param(_answer_quoting_the_key, True, id="streamed-answer"),
    ],
)
@pytest.mark.parametrize("guarded", [False, True], ids=["unguarded", "guarded"])
@pytest.mark.parametrize("model", [MODEL, MODEL_NO_N])
async def test_upstream_key_is_never_relayed(handler: Any, stream: bool, guarded: bool, model: str) -> None:
    upstream = ScriptedUpstream(handler)
    async with relay_gateway(upstream, relay_settings(guarded=guarded)) as client:
        response = await client.post("/v1/chat/completions", json=_request(model, stream))
    assert upstream.requests[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # it was echoed
    assert UPSTREAM_KEY not in response.text
    assert UPSTREAM_KEY not in json.dumps(dict(response.headers))
    assert "Bearer [REDACTED]" in _visible(response)  # scrubbed in place: the rest is still useful
