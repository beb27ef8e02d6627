"""The official openai SDK, sync and async, against the gateway in front of a real llama.cpp server."""

from __future__ import annotations

import math
import time

import httpx
import openai
import pytest

from tests.integration.conftest import GATEWAY_KEY, MAX_BODY
from tests.support.servers import LLAMA_ALIAS

MESSAGES = [{"role": "user", "content": "Name a colour."}]


def test_models_lists_what_llama_cpp_serves(sync_client: openai.OpenAI) -> None:
    ids = {model.id for model in sync_client.models.list()}
    assert LLAMA_ALIAS in ids  # discovered from llama.cpp
    assert {"dead-model", "hanging-model"} <= ids  # configured
    assert sync_client.models.retrieve(LLAMA_ALIAS).owned_by == "llama"


def test_chat_non_stream(sync_client: openai.OpenAI) -> None:
    raw = sync_client.chat.completions.with_raw_response.create(
        model=LLAMA_ALIAS, messages=MESSAGES, max_tokens=8, temperature=0
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert raw.headers["x-request-id"]
    # Present and a number; its size belongs in tests/benchmarks (proxy_overhead), not in an assertion.
    assert math.isfinite(float(raw.headers["x-hhh-overhead-ms"]))
    assert float(raw.headers["x-hhh-overhead-ms"]) >= 0


def test_chat_stream(sync_client: openai.OpenAI) -> None:
    stream = sync_client.chat.completions.create(
        model=LLAMA_ALIAS, messages=MESSAGES, max_tokens=8, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [finishes[0]]
    assert finishes[0] in ("length", "stop")
    report = (chunks[-1].model_extra or {})["guardrails"]  # the output guards' report comes last
    assert report["output"][0]["decision"] in ("pass", "redact")


def test_n_2_non_stream_and_stream(sync_client: openai.OpenAI) -> None:
    completion = sync_client.chat.completions.create(
        model=LLAMA_ALIAS, messages=MESSAGES, max_tokens=6, n=2, temperature=1.0
    )
    assert [choice.index for choice in completion.choices] == [0, 1]
    assert all(choice.message.content for choice in completion.choices)
    stream = sync_client.chat.completions.create(
        model=LLAMA_ALIAS, messages=MESSAGES, max_tokens=6, n=2, stream=True
    )
    texts = {0: "", 1: ""}
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts[0]
    assert texts[1]


def test_include_usage(sync_client: openai.OpenAI) -> None:
    stream = sync_client.chat.completions.create(
        model=LLAMA_ALIAS,
        messages=MESSAGES,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    # Counted from the upstream's token deltas (llama.cpp sends one token a chunk), before the output
    # guards re-cut the text into windows.
    assert 0 < last.usage.completion_tokens <= 8
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    # Without the option, no usage chunk.
    plain = list(
        sync_client.chat.completions.create(model=LLAMA_ALIAS, messages=MESSAGES, max_tokens=4, stream=True)
    )
    assert all(chunk.usage is None for chunk in plain)


def test_legacy_completions(sync_client: openai.OpenAI) -> None:
    completion = sync_client.completions.create(model=LLAMA_ALIAS, prompt="The sky is", max_tokens=5)
    assert completion.choices[0].text


async def test_async_client_stream_and_non_stream(async_client: openai.AsyncOpenAI) -> None:
    completion = await async_client.chat.completions.create(
        model=LLAMA_ALIAS, messages=MESSAGES, max_tokens=5
    )
    assert completion.choices[0].message.content
    stream = await async_client.chat.completions.create(
        model=LLAMA_ALIAS,
        messages=MESSAGES,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None


# --- errors, through the SDK's own exception classes ------------------------------------------


def test_unknown_model(sync_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sync_client.chat.completions.create(model="gpt-99", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_wrong_field_type(sync_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sync_client.chat.completions.create(model=LLAMA_ALIAS, messages=MESSAGES, temperature="hot")  # type: ignore[arg-type]
    assert caught.value.param == "temperature"
    assert caught.value.type == "invalid_request_error"


def test_malformed_json(gateway_url: str) -> None:
    response = httpx.post(
        f"{gateway_url}/chat/completions",
        content=b'{"model": ',
        headers={"authorization": f"Bearer {GATEWAY_KEY}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_wrong_and_missing_key(gateway_url: str) -> None:
    with openai.OpenAI(base_url=gateway_url, api_key="hhh-wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model=LLAMA_ALIAS, messages=MESSAGES)
        assert caught.value.code == "invalid_api_key"
    response = httpx.get(f"{gateway_url}/models")
    assert response.status_code == 401


def test_body_too_large(sync_client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sync_client.chat.completions.create(
            model=LLAMA_ALIAS, messages=[{"role": "user", "content": "x" * (MAX_BODY + 1)}]
        )
    assert caught.value.status_code == 413
    assert caught.value.code == "request_too_large"


def test_upstream_unreachable(sync_client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        sync_client.chat.completions.create(model="dead-model", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unreachable"


def test_upstream_timeout(sync_client: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        sync_client.chat.completions.create(model="hanging-model", messages=MESSAGES)
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"
    assert time.monotonic() - started < 5  # the configured 1 s read timeout, not the client's 60 s


def test_upstream_error_status_is_rewrapped(sync_client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        sync_client.chat.completions.create(model="stub-plain-503", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert caught.value.body == {
        "message": "Service Unavailable: the model is loading",
        "type": "upstream_error",
        "param": None,
        "code": 503,
    }
    assert caught.value.type == "upstream_error"


def test_upstream_error_status_from_llama_cpp_is_passed_on(
    sync_client: openai.OpenAI, llama_url: str
) -> None:
    # llama.cpp rejects a prompt longer than its context; the gateway keeps its status and its envelope.
    # 1,000 emoji are about 3,000 tokens but only 1,000 characters for the input guards to read.
    body = {"model": LLAMA_ALIAS, "messages": [{"role": "user", "content": "🦜" * 1000}], "max_tokens": 4}
    direct = httpx.post(f"{llama_url}/chat/completions", json=body, timeout=120)
    assert direct.status_code == 400
    assert direct.json()["error"]["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as caught:
        sync_client.chat.completions.create(**body)
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.body["message"] == direct.json()["error"]["message"]  # type: ignore[index]


def test_upstream_dies_mid_stream(sync_client: openai.OpenAI) -> None:
    stream = sync_client.chat.completions.create(model="stub-broken-stream", messages=MESSAGES, stream=True)
    received: list[str | None] = []

    def read_all() -> None:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIError) as caught:
        read_all()
    # What arrived before the failure was checked by the output guards, then released, then the error.
    assert "".join(received) == "partial answer"
    assert "upstream" in caught.value.message.lower()
