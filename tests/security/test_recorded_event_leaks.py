"""Threat: personal data the client never saw, or never sent past the guards, kept in ``hhh:events``.

The recorded event holds the request as the upstream received it and the choices as the client
received them: side fields redacted, answer fields and logprobs guarded. Real Redis, real recorder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from feedback.events import CompletionEvent, decode_event
from guards.policy import Policy
from tests.support.redis_server import redis_server
from tests.support.slots_upstream import BLOCK_AND_REDACT, WINDOWS, slots_gateway

ADDRESS = "ann.smith@example.org"
PERSONAL = f"Please write to {ADDRESS} about it today, and nobody else at all."
GUARDED = Policy(input=BLOCK_AND_REDACT, output=BLOCK_AND_REDACT, stream=WINDOWS)


def _side_fields() -> dict[str, Any]:
    tool = {"type": "function", "function": {"name": "f", "description": f"mail {ADDRESS}", "parameters": {}}}
    return {
        "model": "content",
        "messages": [
            {
                "role": "assistant",
                "refusal": f"not to {ADDRESS}",
                "function_call": {"name": "f", "arguments": ADDRESS},
            },
            {"role": "user", "name": ADDRESS, "content": "hello"},
        ],
        "tools": [tool],
        "user": ADDRESS,
        "metadata": {"contact": ADDRESS},
    }


async def _send_all(tmp_path: Path, url: str) -> None:
    async with slots_gateway(GUARDED, data_dir=tmp_path, redis_url=url) as gateway:
        requests = [
            ("/v1/chat/completions", _side_fields()),
            ("/v1/completions", {"model": "content", "prompt": "hi", "suffix": ADDRESS, "user": ADDRESS}),
            (
                "/v1/chat/completions",
                {"model": "reasoning", "messages": [{"role": "user", "content": "hi"}]},
            ),
            (
                "/v1/chat/completions",
                {"model": "reasoning", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            ),
            (
                "/v1/chat/completions",
                {
                    "model": "function-call",
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            ),
            (
                "/v1/chat/completions",
                {"model": "reasoning", "logprobs": True, "messages": [{"role": "user", "content": "hi"}]},
            ),
        ]
        for path, body in requests:
            gateway.upstream.say = PERSONAL if body["model"] != "content" else None
            response = await gateway.client.post(path, json=body)
            assert response.status_code == 200, response.text
    # Leaving the gateway closes the recorder, which writes whatever is still queued.


def _events(url: str) -> list[tuple[bytes, CompletionEvent]]:
    entries = redis.Redis.from_url(url).xrange("hhh:events")
    return [(fields[b"event"], decode_event(fields[b"event"])) for _, fields in entries]


async def test_recorded_events_carry_no_unredacted_personal_data(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        await _send_all(tmp_path, url)
        events = _events(url)
    assert len(events) == 6
    for raw, _ in events:
        assert ADDRESS.encode() not in raw
        assert b"ann.smith" not in raw
    reasoned = [event for _, event in events if event.model == "reasoning"]
    for event in reasoned:  # what the client got, guarded, is what was kept
        message = event.choices[0]["message"]
        assert message["reasoning_content"] == PERSONAL.replace(ADDRESS, "<EMAIL_ADDRESS>")
    called = next(event for _, event in events if event.model == "function-call")
    arguments = json.loads(called.choices[0]["message"]["function_call"]["arguments"])
    assert arguments == {"q": PERSONAL.replace(ADDRESS, "<EMAIL_ADDRESS>")}
