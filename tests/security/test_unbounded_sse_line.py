"""Threat: an upstream streams an event that never ends, to make the gateway buffer it without limit.

Before: a 64 MB line with no line break was held whole (RSS +226 MB). A line, or one event's data lines,
longer than ``relay.max_event_bytes`` must end the stream with an error event and ``[DONE]``, and the
gateway must stop reading the upstream at about that point.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.settings import ConfigError, settings_from_mapping
from tests.support.relay_upstreams import (
    MODEL,
    ScriptedUpstream,
    chunk,
    relay_gateway,
    relay_settings,
    sse_frame,
)
from tests.support.sse import sse_events

CAP = 64 * 1024
PIECE = 16 * 1024
OFFERED = 16 * 1024 * 1024  # what the upstream would send, if the gateway kept reading: 256 caps


class EndlessEvent:
    """A stream whose second event never ends; counts the bytes the gateway pulled."""

    def __init__(self, piece: bytes) -> None:
        self.piece = piece
        self.pulled = 0

    async def answer(self, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        async def frames() -> AsyncIterator[bytes]:
            yield sse_frame(chunk("Hello"))
            yield b'data: {"choices": [{"index": 0, "delta": {"content": "'
            while self.pulled < OFFERED:
                self.pulled += len(self.piece)
                yield self.piece

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=frames())


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True}


@pytest.mark.parametrize(
    "piece",
    [
        pytest.param(b"a" * PIECE, id="one-endless-line"),
        pytest.param(b"a\ndata: " * (PIECE // 8), id="endless-data-lines-in-one-event"),
    ],
)
@pytest.mark.parametrize("guarded", [False, True], ids=["unguarded", "guarded"])
async def test_an_endless_event_is_cut_at_the_cap(piece: bytes, guarded: bool) -> None:
    upstream = EndlessEvent(piece)
    settings = relay_settings(guarded=guarded, max_event_bytes=CAP)
    async with relay_gateway(ScriptedUpstream(upstream.answer), settings) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert error["type"] == "upstream_error"
    assert error["code"] == "upstream_event_too_large"
    assert "relay.max_event_bytes" in error["message"]
    assert events[0]["choices"][0]["delta"]["content"] == "Hello"  # what came before went out
    assert upstream.pulled <= CAP + 2 * PIECE  # the gateway stopped reading at the cap


def test_the_cap_is_a_setting_that_names_its_key() -> None:
    assert (
        settings_from_mapping({"relay": {"max_event_bytes": 8 * 1024 * 1024}}).relay.max_event_bytes
        == 8 << 20
    )
    with pytest.raises(ConfigError, match=r"relay\.max_event_bytes"):
        settings_from_mapping({"relay": {"max_event_bytes": 10}})
