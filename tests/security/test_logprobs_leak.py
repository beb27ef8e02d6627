"""Threat: text a guard blocked or redacted comes back through ``logprobs``, which spell every token.

A blocked or redacted choice loses its logprobs; a guarded stream keeps the logprobs of text that
passed, released with it, and drops those of text that was redacted or withheld.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from guards.policy import Policy, Rule, StreamMode, StreamPolicy
from tests.support.servers import LLAMA_ALIAS
from tests.support.slots_upstream import BLOCK_AND_REDACT, WINDOWS, slots_gateway
from tests.support.sse import sse_events

GUARDED = Policy(output=BLOCK_AND_REDACT, stream=WINDOWS)  # no input guards: the upstream says it back
ADDRESS = "qzx.vwk@jqv.zz"  # its tokens appear nowhere else in a response


def _secret_tokens(text: str, secret: str) -> list[str]:
    """The upstream's three-character tokens of ``text`` that hold a piece of ``secret``."""
    start = text.index(secret)
    end = start + len(secret)
    return [text[i : i + 3] for i in range(0, len(text), 3) if i < end and start < i + 3]


def _chat(text: str, model: str = "content", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "logprobs": True, **extra}


@pytest.mark.parametrize(
    ("text", "secret"),
    [("say BADWORD now, please", "BADWORD"), (f"mail {ADDRESS} now", ADDRESS)],
    ids=["blocked", "redacted"],
)
async def test_chat_logprobs_do_not_spell_blocked_or_redacted_text(text: str, secret: str) -> None:
    async with slots_gateway(GUARDED) as gateway:
        response = await gateway.client.post("/v1/chat/completions", json=_chat(text))
        choice = response.json()["choices"][0]
        assert choice["message"]["content"] in (None, "mail <EMAIL_ADDRESS> now")
        assert choice["logprobs"] is None
        for token in _secret_tokens(text, secret):
            assert token not in response.text


@pytest.mark.parametrize(
    ("text", "secret"),
    [("say BADWORD now, please", "BADWORD"), (f"mail {ADDRESS} now", ADDRESS)],
    ids=["blocked", "redacted"],
)
async def test_legacy_completion_logprobs_do_not_spell_blocked_or_redacted_text(
    text: str, secret: str
) -> None:
    async with slots_gateway(GUARDED) as gateway:
        body = {"model": "content", "prompt": text, "logprobs": 1}
        response = await gateway.client.post("/v1/completions", json=body)
        choice = response.json()["choices"][0]
        assert secret not in choice["text"]
        assert choice["logprobs"] is None
        for token in _secret_tokens(text, secret):
            assert token not in response.text


def _stream_parts(events: list[Any]) -> tuple[str, list[str], list[Any]]:
    """Chat stream → (content, the tokens its logprobs spell, every finish reason)."""
    content, tokens, finishes = "", [], []
    for event in events:
        for choice in event.get("choices", []) if isinstance(event, dict) else []:
            content += (choice.get("delta") or {}).get("content") or ""
            tokens += [entry["token"] for entry in ((choice.get("logprobs") or {}).get("content") or [])]
            if choice.get("finish_reason"):
                finishes.append(choice["finish_reason"])
    return content, tokens, finishes


async def test_guarded_stream_keeps_the_logprobs_of_text_that_passed() -> None:
    text = "A calm sentence is here. And then another calm one follows it."
    async with slots_gateway(GUARDED) as gateway:
        response = await gateway.client.post("/v1/chat/completions", json=_chat(text, stream=True))
        content, tokens, finishes = _stream_parts(sse_events(response.text))
        assert content == text
        assert "".join(tokens) == text  # every token, once, in order
        assert finishes == ["stop"]


async def test_guarded_stream_drops_the_logprobs_of_redacted_text_only() -> None:
    text = f"Please write to {ADDRESS} about it today, and nobody else at all."
    async with slots_gateway(GUARDED) as gateway:
        response = await gateway.client.post("/v1/chat/completions", json=_chat(text, stream=True))
        content, tokens, _ = _stream_parts(sse_events(response.text))
        assert content == "Please write to <EMAIL_ADDRESS> about it today, and nobody else at all."
        secret = _secret_tokens(text, ADDRESS)
        assert not set(secret) & set(tokens)
        assert "@" not in response.text
        # Everything else keeps its logprobs: all tokens but those that touch the address.
        assert tokens == [t for t in (text[i : i + 3] for i in range(0, len(text), 3)) if t not in secret]


async def test_guarded_stream_withholds_the_logprobs_of_blocked_text() -> None:
    text = "A calm opening sentence here. Then BADWORD appears in the middle. And a calm ending."
    async with slots_gateway(GUARDED) as gateway:
        response = await gateway.client.post("/v1/chat/completions", json=_chat(text, stream=True))
        content, tokens, finishes = _stream_parts(sse_events(response.text))
        assert content == "A calm opening sentence here. "
        assert finishes == ["content_filter"]
        released = "".join(tokens)
        assert released
        assert content.startswith(released)
        assert "DWO" not in response.text


async def test_legacy_stream_logprobs_point_into_the_redacted_text() -> None:
    text = f"Please write to {ADDRESS} about it today. And then to nobody else at all."
    async with slots_gateway(GUARDED) as gateway:
        body = {"model": "content", "prompt": text, "logprobs": 1, "stream": True}
        response = await gateway.client.post("/v1/completions", json=body)
        streamed, pairs = "", []
        for event in sse_events(response.text):
            for choice in event.get("choices", []) if isinstance(event, dict) else []:
                streamed += choice.get("text") or ""
                logprobs = choice.get("logprobs") or {}
                pairs += zip(logprobs.get("tokens") or [], logprobs.get("text_offset") or [], strict=True)
        assert streamed == text.replace(ADDRESS, "<EMAIL_ADDRESS>")
        assert "@" not in response.text
        assert len(pairs) >= 15  # the tokens around the address kept theirs
        for token, offset in pairs:  # an offset after the redaction still points at its token
            assert streamed[offset : offset + len(token)] == token


async def test_stream_first_sends_logprobs_with_their_text() -> None:
    loose = StreamPolicy(mode=StreamMode.STREAM_FIRST, min_chars=10, max_chars=40, overlap_chars=12)
    text = "A calm sentence is here. And then another calm one follows it."
    async with slots_gateway(Policy(output=[Rule(guard="toxicity")], stream=loose)) as gateway:
        response = await gateway.client.post("/v1/chat/completions", json=_chat(text, stream=True))
        for event in sse_events(response.text):  # each text chunk carries the logprobs of its own tokens
            for choice in event.get("choices", []) if isinstance(event, dict) else []:
                if (choice.get("delta") or {}).get("content"):
                    spelled = "".join(e["token"] for e in choice["logprobs"]["content"])
                    assert spelled == choice["delta"]["content"]
        content, tokens, _ = _stream_parts(sse_events(response.text))
        assert "".join(tokens) == content == text


def test_real_llama_stream_keeps_logprobs_that_spell_what_was_released(sync_client: openai.OpenAI) -> None:
    """llama.cpp's own chunks (its legacy stream carries logprobs), through the default guards."""
    stream = sync_client.completions.create(
        model=LLAMA_ALIAS, prompt="Three colours of the rainbow are", stream=True, logprobs=1, max_tokens=24
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    tokens = [
        token
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for token in c.choices[0].logprobs.tokens or []
    ]
    decision = (chunks[-1].model_extra or {})["guardrails"]["output"][0]["decision"]
    assert text
    if decision == "pass":
        assert "".join(tokens) == text
    else:  # redacted or cut: only the tokens of released, unredacted text
        assert tokens
        assert all(token in text for token in tokens)
