"""A hostile upstream for the tests of which fields guards read: it says back what it was sent, in the
answer field its model name chooses, with logprobs that spell every token, streamed or not.

Models: ``content`` (the text as content), ``reasoning`` (as ``reasoning_content``, then a plain
content), ``refusal`` (as the upstream's own ``refusal``), ``function-call`` (as a legacy
``function_call``'s arguments). The text is the last message's content, or the legacy prompt. Streams
come in three-character chunks, one token each, so guards see words split across chunks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.settings import FeedbackSettings, RedisSettings, Settings, UpstreamSettings
from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule, StreamPolicy
from tests.support.fake_guards import EmailGuard, WordGuard

REASONED_ANSWER = "The answer is ready."
WINDOWS = StreamPolicy(min_chars=10, max_chars=40, overlap_chars=12)
BLOCK_AND_REDACT = [Rule(guard="toxicity"), Rule(guard="pii", action=Action.REDACT)]


def _tokens(text: str) -> list[str]:
    return [text[i : i + 3] for i in range(0, len(text), 3)]


def chat_logprobs(tokens: list[str], field: str = "content") -> dict[str, Any]:
    entries = [
        {
            "token": t,
            "logprob": -0.5,
            "bytes": list(t.encode()),
            "top_logprobs": [{"token": t, "logprob": -0.5}],
        }
        for t in tokens
    ]
    return {"content": None, "refusal": None, field: entries}


def text_logprobs(tokens: list[str], start: int = 0) -> dict[str, Any]:
    offsets, cursor = [], start
    for token in tokens:
        offsets.append(cursor)
        cursor += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [-0.5] * len(tokens),
        "top_logprobs": [{t: -0.5} for t in tokens],
        "text_offset": offsets,
    }


class SlotsUpstream:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.say: str | None = None  # answer this instead of what was sent (which input guards rewrite)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # the model list
            models = [{"id": m} for m in ("content", "reasoning", "refusal", "function-call")]
            return httpx.Response(200, json={"object": "list", "data": models})
        body = json.loads(await request.aread())
        self.bodies.append(body)
        chat = "messages" in body
        text = self.say or (body["messages"][-1]["content"] if chat else body["prompt"])
        logprobs = bool(body.get("logprobs"))
        if body.get("stream"):
            frames = (
                self._chat_frames(body["model"], text, logprobs) if chat else _text_frames(text, logprobs)
            )
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_sse(frames))
        if not chat:
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
            choice["logprobs"] = text_logprobs(_tokens(text)) if logprobs else None
            return httpx.Response(
                200, json={"id": "cmpl-s", "object": "text_completion", "choices": [choice]}
            )
        message, finish, field = _message(body["model"], text)
        choice = {"index": 0, "message": message, "finish_reason": finish}
        choice["logprobs"] = chat_logprobs(_tokens(text), field) if logprobs else None
        return httpx.Response(
            200, json={"id": "chatcmpl-s", "object": "chat.completion", "choices": [choice]}
        )

    def _chat_frames(self, model: str, text: str, logprobs: bool) -> Iterator[dict[str, Any]]:
        yield _chat_chunk({"role": "assistant"})
        field = {"reasoning": "reasoning_content", "refusal": "refusal"}.get(model, "content")
        if model == "function-call":
            yield _chat_chunk({"function_call": {"name": "lookup", "arguments": ""}})
            for token in _tokens(json.dumps({"q": text})):
                yield _chat_chunk({"function_call": {"arguments": token}})
            yield _chat_chunk({}, "function_call")
            return
        for token in _tokens(text):
            lp = chat_logprobs([token], "refusal" if field == "refusal" else "content") if logprobs else None
            yield _chat_chunk({field: token}, logprobs=lp)
        if model == "reasoning":
            for token in _tokens(REASONED_ANSWER):
                yield _chat_chunk({"content": token}, logprobs=chat_logprobs([token]) if logprobs else None)
        yield _chat_chunk({}, "stop")


def _message(model: str, text: str) -> tuple[dict[str, Any], str, str]:
    """The answer's message, its finish reason, and which logprobs list spells ``text``."""
    if model == "reasoning":
        return {"role": "assistant", "reasoning_content": text, "content": REASONED_ANSWER}, "stop", "content"
    if model == "refusal":
        return {"role": "assistant", "content": None, "refusal": text}, "stop", "refusal"
    if model == "function-call":
        call = {"name": "lookup", "arguments": json.dumps({"q": text})}
        return {"role": "assistant", "content": None, "function_call": call}, "function_call", "content"
    return {"role": "assistant", "content": text}, "stop", "content"


def _chat_chunk(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    return {"id": "chatcmpl-s", "object": "chat.completion.chunk", "choices": [choice]}


def _text_frames(text: str, logprobs: bool) -> Iterator[dict[str, Any]]:
    offset = 0
    for token in _tokens(text):
        lp = text_logprobs([token], offset) if logprobs else None
        offset += len(token)
        yield {
            "id": "cmpl-s",
            "object": "text_completion",
            "choices": [{"index": 0, "text": token, "logprobs": lp, "finish_reason": None}],
        }
    yield {
        "id": "cmpl-s",
        "object": "text_completion",
        "choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
    }


async def _sse(frames: Iterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    for frame in frames:
        yield f"data: {json.dumps(frame)}\n\n".encode()
    yield b"data: [DONE]\n\n"


class Gateway:
    def __init__(self, client: AsyncTestClient[Any], upstream: SlotsUpstream) -> None:
        self.client = client
        self.upstream = upstream


@asynccontextmanager
async def slots_gateway(
    policy: Policy | PolicyBook, data_dir: Path | None = None, redis_url: str | None = None
) -> AsyncIterator[Gateway]:
    """The gateway over a ``SlotsUpstream`` with the fake guards (``BADWORD`` is toxic, e-mail is PII);
    with ``redis_url``, it records every completion there."""
    upstream = SlotsUpstream()
    settings = Settings(
        data_dir=str(data_dir or "~/.hhh"),
        feedback=FeedbackSettings(record=redis_url is not None),
        redis=RedisSettings(url=redis_url),
        upstreams=[UpstreamSettings(name="slots", url="http://slots.test/v1")],
        guards={"toxicity": GuardSpec(type="toxicity"), "pii": GuardSpec(type="pii")},
        policies=policy if isinstance(policy, PolicyBook) else PolicyBook(default=policy),
    )
    guards = {"toxicity": WordGuard(), "pii": EmailGuard()}
    app = create_app(settings, upstream_transport=upstream.transport(), guards=guards)
    async with AsyncTestClient(app) as client:
        yield Gateway(client, upstream)
