"""A client that goes away mid-stream cancels the upstream request."""

from __future__ import annotations

import re
import time
from pathlib import Path

import openai

from tests.support.servers import LLAMA_ALIAS, StubState

# What llama-cpp-python's server logs when the client of a streamed generation goes away.
LLAMA_DISCONNECTED = "Disconnected from client"
MESSAGES = [{"role": "user", "content": "Write a very long story about the sea."}]


def test_disconnect_reaches_the_stub_upstream(
    sync_client: openai.OpenAI, stub: tuple[str, StubState]
) -> None:
    _, state = stub
    stream = sync_client.chat.completions.create(model="stub-slow-stream", messages=MESSAGES, stream=True)
    for count, _ in enumerate(stream):
        if count == 3:
            break
    stream.close()
    sent_when_closed = state.slow_stream_chunks_sent
    assert state.slow_stream_abandoned.wait(timeout=5), "the upstream kept streaming to nobody"
    # One chunk every 50 ms: the upstream stopped within about a second of the client leaving.
    assert state.slow_stream_chunks_sent - sent_when_closed < 20


def test_disconnect_stops_llama_cpp_generating(sync_client: openai.OpenAI, server_logs: Path) -> None:
    """Read from llama.cpp's own log: its server notes each client that left mid-generation, and an
    abandoned generation never reports its timings (it would, after 1,500 tokens, had it gone on)."""
    log = server_logs / "llama.log"
    before = log.read_text(errors="replace").count(LLAMA_DISCONNECTED)
    stream = sync_client.chat.completions.create(
        model=LLAMA_ALIAS, messages=MESSAGES, max_tokens=1500, stream=True, temperature=1.0
    )
    for count, _ in enumerate(stream):
        if count == 5:
            break
    stream.close()
    deadline = time.monotonic() + 30  # polling for the log line, not a bound on speed
    while log.read_text(errors="replace").count(LLAMA_DISCONNECTED) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log.read_text(errors="replace").count(LLAMA_DISCONNECTED) == before + 1
    completion = sync_client.chat.completions.create(model=LLAMA_ALIAS, messages=MESSAGES, max_tokens=4)
    assert completion.choices[0].message.content is not None
    runs = [int(n) for n in re.findall(r"\beval time =.*?/\s+(\d+) runs", log.read_text(errors="replace"))]
    assert runs
    assert max(runs) < 1000  # no generation ran anywhere near the abandoned 1,500 tokens
