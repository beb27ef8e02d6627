"""Personal data round trip with the real PII guard (presidio), through the official openai SDK: the
upstream and the recorded event get numbered placeholders only; the client gets its own values back."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import openai
import pytest
import redis

from feedback.events import CompletionEvent, decode_event
from tests.support.servers import StubState

MESSAGE = "Please email Maria Lopez at maria.lopez@example.com, and tell John Smith about the invoice."
VALUES = ("Maria Lopez", "maria.lopez@example.com", "John Smith")


def _event(server_logs: Path, request_id: str) -> CompletionEvent:
    """The session gateway's recorded event of one request, from its embedded Redis."""
    url = (server_logs / "data" / "redis" / "url").read_text().strip()
    deadline = time.monotonic() + 10
    while True:
        for _, fields in redis.Redis.from_url(url).xrange("hhh:events"):
            event = decode_event(fields[b"event"])
            if event.request_id == request_id:
                return event
        assert time.monotonic() < deadline, "the event was never recorded"
        time.sleep(0.1)


@pytest.mark.parametrize("stream", [False, True])
def test_two_people_and_an_address_round_trip_with_placeholders_upstream_and_recorded(
    sync_client: openai.OpenAI, stub: tuple[str, StubState], server_logs: Path, stream: bool
) -> None:
    _, state = stub
    request_id = f"pii-restore-{uuid.uuid4().hex}"
    messages = [{"role": "user", "content": MESSAGE}]
    if stream:
        chunks = sync_client.chat.completions.create(
            model="stub-echo", messages=messages, stream=True, extra_headers={"x-request-id": request_id}
        )
        received = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        completion = sync_client.chat.completions.create(
            model="stub-echo", messages=messages, extra_headers={"x-request-id": request_id}
        )
        received = completion.choices[0].message.content or ""
    sent = next(b for b in reversed(state.bodies) if b.get("stream", False) == stream)
    sent_text = sent["messages"][0]["content"]
    expected = "Please email <PERSON_1> at <EMAIL_ADDRESS_1>, and tell <PERSON_2> about the invoice."
    assert sent_text == expected  # one placeholder per value; two people, two numbers
    assert received.strip() == MESSAGE  # each placeholder back as its own value (a stream adds a space)
    event = _event(server_logs, request_id)
    assert event.request["messages"][0]["content"] == expected
    assert event.choices[0]["message"]["content"].strip() == expected
    for value in VALUES:
        assert value not in str(sent)
        assert value not in str(event)
