"""An upstream that always answers, and a gateway in front of it, for fuzzing the published API contract.

The upstream answers every well-formed call with a valid OpenAI shape (streamed or not), so any 5xx the
gateway gives is the gateway's own bug, never an upstream failure it relays.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar

from feedback.labelstudio.settings import LabelStudioSettings
from gateway.app import create_app
from gateway.auth import hash_key
from gateway.settings import (
    ApiKey,
    AuthSettings,
    FeedbackSettings,
    RedisSettings,
    ServerSettings,
    Settings,
    UpstreamSettings,
)
from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule, StreamPolicy
from guards.protocol import Guard
from tests.support.fake_guards import EmailGuard, WordGuard

MODEL = "fuzz-model"
GATEWAY_KEY = "hhh-fuzz-key"
WEBHOOK_SECRET = "fuzz-webhook-secret"
ANSWER = "A fuzzed answer; write to someone@example.com for more."
# As OpenAI's own API: a larger n is refused (400), so every answer has as many choices as were asked
# (an upstream seen answering fewer is asked n times over, which is not what this fuzzes).
MAX_N = 128
_USAGE = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}


def _choices(body: dict[str, Any], chat: bool, text: str, finish: str | None) -> list[dict[str, Any]]:
    n = body.get("n")
    count = n if isinstance(n, int) and 1 <= n <= MAX_N else 1
    if chat:
        return [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            for i in range(count)
        ]
    return [{"index": i, "text": text, "finish_reason": finish} for i in range(count)]


def _answer(body: dict[str, Any], chat: bool) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fuzz" if chat else "cmpl-fuzz",
        "object": "chat.completion" if chat else "text_completion",
        "created": 1,
        "model": MODEL,
        "choices": _choices(body, chat, ANSWER, "stop"),
        "usage": _USAGE,
    }


async def _frames(body: dict[str, Any], chat: bool) -> AsyncIterator[bytes]:
    def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {
            "id": "chatcmpl-fuzz" if chat else "cmpl-fuzz",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": 1,
            "model": MODEL,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    for word in ANSWER.split(" "):
        choices = _choices(body, chat, word + " ", None)
        for choice in choices:
            if chat:
                choice["delta"] = choice.pop("message")
        yield frame(choices)
    ends = _choices(body, chat, "", "stop")
    for choice in ends:
        if chat:
            choice["delta"] = {}
            del choice["message"]
    yield frame(ends)
    if (body.get("stream_options") or {}).get("include_usage"):
        yield frame([], usage=_USAGE)
    yield b"data: [DONE]\n\n"


async def answer(request: httpx.Request) -> httpx.Response:
    if request.method == "GET":
        return httpx.Response(200, json={"object": "list", "data": [{"id": MODEL, "object": "model"}]})
    body = json.loads(await request.aread())
    if request.url.path.endswith("/embeddings"):
        data = [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]
        return httpx.Response(200, json={"object": "list", "data": data, "model": MODEL, "usage": _USAGE})
    chat = request.url.path.endswith("/chat/completions")
    if isinstance(body.get("n"), int) and body["n"] > MAX_N:
        error = {"message": f"n: at most {MAX_N}", "type": "invalid_request_error", "param": "n"}
        return httpx.Response(400, json={"error": error})
    if body.get("stream") is True:
        events = _frames(body, chat)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=events)
    return httpx.Response(200, json=_answer(body, chat))


def fuzz_settings(redis_url: str, data_dir: Path) -> Settings:
    """Every route on: recording (for feedback), the webhook, and guards on both stages."""
    rules = [Rule(guard="toxicity"), Rule(guard="pii", action=Action.REDACT)]
    windows = StreamPolicy(min_chars=10, max_chars=40, overlap_chars=12)
    return Settings(
        data_dir=str(data_dir),
        server=ServerSettings(max_body_bytes=256 * 1024),
        upstreams=[UpstreamSettings(name="fuzz", url="http://fuzz.test/v1")],
        auth=AuthSettings(keys=[ApiKey(tenant="fuzzer", sha256=hash_key(GATEWAY_KEY))]),
        guards={"toxicity": GuardSpec(type="toxicity"), "pii": GuardSpec(type="pii")},
        policies=PolicyBook(default=Policy(input=rules, output=rules, stream=windows)),
        redis=RedisSettings(url=redis_url),
        feedback=FeedbackSettings(labelstudio=LabelStudioSettings(webhook_secret=WEBHOOK_SECRET)),
    )


def fuzz_app(redis_url: str, data_dir: Path) -> Litestar:
    guards: dict[str, Guard] = {"toxicity": WordGuard(), "pii": EmailGuard()}
    return create_app(
        fuzz_settings(redis_url, data_dir), upstream_transport=httpx.MockTransport(answer), guards=guards
    )
