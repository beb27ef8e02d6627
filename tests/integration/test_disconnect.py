"""A client that goes away mid-stream cancels the upstream request."""

from __future__ import annotations

import time

import openai

from tests.support.servers import LLAMA_ALIAS, StubState

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


def test_disconnect_stops_llama_cpp_generating(sync_client: openai.OpenAI) -> None:
    # llama.cpp serves one request at a time. If the abandoned 1,500-token generation went on (about
    # 50 s at this model's speed here), the next request would wait behind it.
    stream = sync_client.chat.completions.create(
        model=LLAMA_ALIAS, messages=MESSAGES, max_tokens=1500, stream=True, temperature=1.0
    )
    for count, _ in enumerate(stream):
        if count == 5:
            break
    stream.close()
    started = time.monotonic()
    completion = sync_client.chat.completions.create(model=LLAMA_ALIAS, messages=MESSAGES, max_tokens=4)
    assert completion.choices[0].message.content is not None
    assert time.monotonic() - started < 15
