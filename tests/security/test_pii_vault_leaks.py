"""Threat: the values behind a request's numbered placeholders (``<EMAIL_ADDRESS_1>`` → the address)
escape the one place they may go, that request's own answer: into the logs, the recorded events, the
upstream, or another request's answer.

Every answer field the slots upstream can use (content, reasoning, an upstream's refusal, a legacy
function call; streamed or whole; chat and legacy text), with logprobs. Real Redis, real recorder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import redis

from guards.policy import Policy
from tests.support.redis_server import redis_server
from tests.support.slots_upstream import BLOCK_AND_REDACT, WINDOWS, slots_gateway
from tests.support.sse import sse_events

ADDRESS, OTHER = "ann.smith@example.org", "bo.li@example.net"
GUARDED = Policy(input=BLOCK_AND_REDACT, output=BLOCK_AND_REDACT, stream=WINDOWS)


def _requests() -> list[tuple[str, dict[str, Any]]]:
    text = f"Write to {ADDRESS} about it today, not to {OTHER}; {ADDRESS} waits."
    chat = [
        {"model": model, "stream": stream, "logprobs": True, "messages": [{"role": "user", "content": text}]}
        for model in ("content", "reasoning", "refusal", "function-call")
        for stream in (False, True)
    ]
    legacy = [{"model": "content", "stream": stream, "prompt": text} for stream in (False, True)]
    return [("/v1/chat/completions", body) for body in chat] + [("/v1/completions", b) for b in legacy]


def _client_text(response: Any, stream: bool) -> str:
    return "".join(json.dumps(e) for e in sse_events(response.text)[:-1]) if stream else response.text


async def test_values_reach_only_their_own_answer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with redis_server(tmp_path) as url:
        async with slots_gateway(GUARDED, data_dir=tmp_path, redis_url=url) as gateway:
            for path, body in _requests():
                response = await gateway.client.post(path, json=body)
                assert response.status_code == 200, response.text
                # The slots upstream says back what it was sent: the client gets the values back...
                seen = _client_text(response, body["stream"])
                assert ADDRESS in seen, (body, seen)
                assert OTHER in seen, (body, seen)
                assert "<EMAIL_ADDRESS_" not in seen
        # ...while the upstream, the recorder and the logs only ever had the placeholders.
        raw_events = [f[b"event"] for _, f in redis.Redis.from_url(url).xrange("hhh:events")]
    assert len(raw_events) == len(_requests())
    upstream = json.dumps(gateway.upstream.bodies)
    for value in (ADDRESS, OTHER, "ann.smith", "bo.li"):
        assert value not in upstream
        assert not any(value.encode() in raw for raw in raw_events)
        assert value not in caplog.text
        assert not any(value in str(record.args) for record in caplog.records)
    assert all(b"<EMAIL_ADDRESS_1>" in raw and b"<EMAIL_ADDRESS_2>" in raw for raw in raw_events)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_placeholder_is_never_restored_with_another_requests_value(stream: bool) -> None:
    async with slots_gateway(GUARDED) as gateway:
        first = {"model": "content", "stream": stream, "messages": [{"role": "user", "content": ADDRESS}]}
        assert ADDRESS in _client_text(await gateway.client.post("/v1/chat/completions", json=first), stream)
        gateway.upstream.say = "Reply to <EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>."
        unrelated = {**first, "messages": [{"role": "user", "content": "hello"}]}
        response = await gateway.client.post("/v1/chat/completions", json=unrelated)
        seen = _client_text(response, stream)
        assert ADDRESS not in seen
        assert "<EMAIL_ADDRESS_1>" in seen  # no mapping for this request: the placeholder stays
        another = {**first, "messages": [{"role": "user", "content": f"I am {OTHER}"}]}
        seen = _client_text(await gateway.client.post("/v1/chat/completions", json=another), stream)
        assert ADDRESS not in seen
        assert OTHER in seen  # its own value only; the rest stays
        assert "<EMAIL_ADDRESS_2>" in seen
