"""Threat: an upstream answers 200 with a body that is not an answer, to make the gateway fail.

Before: invalid JSON or a JSON array gave a 500 with a traceback in the log on the guarded, recorded
and fan-out paths, and the plain relay passed the garbage on as a 200. Every path must answer 502
``upstream_error`` in OpenAI's envelope.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.relay_upstreams import MODEL, MODEL_NO_N, ScriptedUpstream, relay_gateway, relay_settings

BAD_BODIES = [
    pytest.param(b"<html>502 Bad Gateway</html>", id="not-json"),
    pytest.param(b'[{"index": 0}]', id="json-array"),
    pytest.param(b'"a string"', id="json-string"),
    pytest.param(b'{"choices": [42]}', id="choice-is-a-number"),
    pytest.param(b'{"choices": [{"index": 0, "message": "oops"}]}', id="message-is-a-string"),
    pytest.param(b'{"object": "chat.completion"}', id="no-choices"),
]


def _answering(content: bytes) -> ScriptedUpstream:
    async def answer(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, content=content, headers={"content-type": "application/json"})

    return ScriptedUpstream(answer)


def _assert_502(response: httpx.Response) -> None:
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["type"] == "upstream_error"
    assert error["code"] == "upstream_bad_response"


@pytest.mark.parametrize("content", BAD_BODIES)
@pytest.mark.parametrize(
    ("guarded", "model", "n"),
    [
        pytest.param(False, MODEL, 1, id="plain"),
        pytest.param(True, MODEL, 1, id="guarded"),
        pytest.param(False, MODEL, 2, id="n-passed-on"),
        pytest.param(False, MODEL_NO_N, 3, id="n-fanned-out"),
        pytest.param(True, MODEL_NO_N, 3, id="guarded-fanned-out"),
    ],
)
async def test_a_200_that_is_not_a_completion_is_a_502(
    content: bytes, guarded: bool, model: str, n: int
) -> None:
    chat = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "n": n}
    async with relay_gateway(_answering(content), relay_settings(guarded=guarded)) as client:
        _assert_502(await client.post("/v1/chat/completions", json=chat))


@pytest.mark.parametrize("content", BAD_BODIES[:3])
async def test_a_200_that_is_not_a_legacy_completion_is_a_502(content: bytes) -> None:
    async with relay_gateway(_answering(content), relay_settings(guarded=True)) as client:
        _assert_502(await client.post("/v1/completions", json={"model": MODEL, "prompt": "Hi"}))


@pytest.mark.parametrize("content", BAD_BODIES[:3])
async def test_a_200_that_is_not_a_json_object_is_a_502_for_embeddings(content: bytes) -> None:
    async with relay_gateway(_answering(content), relay_settings()) as client:
        _assert_502(await client.post("/v1/embeddings", json={"model": MODEL, "input": "Hi"}))
