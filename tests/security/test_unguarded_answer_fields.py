"""Threat: an answer's text outside ``content`` (reasoning, the upstream's own refusal, a legacy
``function_call``) delivered verbatim, streamed or not, past the output guards.

Each is guarded like content: toxic text ends the choice with ``content_filter``, personal data is
redacted; a stream holds each of them in windows (the call whole) as it holds content.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from guards.policy import Policy
from tests.support.slots_upstream import BLOCK_AND_REDACT, REASONED_ANSWER, WINDOWS, slots_gateway
from tests.support.sse import sse_events

GUARDED = Policy(output=BLOCK_AND_REDACT, stream=WINDOWS)  # no input guards: the upstream says it back
ADDRESS = "someone.long@example.org"
TOXIC = "A calm opening sentence here. Then BADWORD appears in the middle. And a calm ending."
PERSONAL = f"Please write to {ADDRESS} about it today, and nobody else at all."
MODELS = ["reasoning", "refusal", "function-call"]


def _chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@pytest.mark.parametrize("model", MODELS)
async def test_toxic_side_answer_is_blocked(model: str) -> None:
    async with slots_gateway(GUARDED) as gateway:
        response = await gateway.client.post("/v1/chat/completions", json=_chat(model, TOXIC))
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "content_filter"
        assert "toxicity" in choice["message"]["refusal"]
        assert "BADWORD" not in response.text


@pytest.mark.parametrize("model", MODELS)
async def test_personal_data_in_a_side_answer_is_redacted(model: str) -> None:
    async with slots_gateway(GUARDED) as gateway:
        response = await gateway.client.post("/v1/chat/completions", json=_chat(model, PERSONAL))
        message = response.json()["choices"][0]["message"]
        assert ADDRESS not in response.text
        redacted = PERSONAL.replace(ADDRESS, "<EMAIL_ADDRESS>")
        if model == "function-call":
            assert json.loads(message["function_call"]["arguments"]) == {"q": redacted}
        else:
            assert message["reasoning_content" if model == "reasoning" else "refusal"] == redacted


def _assembled(events: list[Any]) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """A chat stream → (each text field joined, finish reasons, the function call joined)."""
    fields: dict[str, str] = {}
    finishes: list[str] = []
    call = {"name": "", "arguments": ""}
    for event in events:
        for choice in event.get("choices", []) if isinstance(event, dict) else []:
            for key, value in (choice.get("delta") or {}).items():
                if isinstance(value, str) and key != "role":
                    fields[key] = fields.get(key, "") + value
            function = (choice.get("delta") or {}).get("function_call") or {}
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                finishes.append(choice["finish_reason"])
    return fields, finishes, call


@pytest.mark.parametrize("model", MODELS)
async def test_toxic_side_answer_is_blocked_in_a_stream(model: str) -> None:
    async with slots_gateway(GUARDED) as gateway:
        response = await gateway.client.post("/v1/chat/completions", json=_chat(model, TOXIC, stream=True))
        events = sse_events(response.text)
        fields, finishes, _ = _assembled(events)
        assert finishes == ["content_filter"]
        assert "toxicity" in fields["refusal"]
        assert "BADWORD" not in response.text
        assert "BAD" not in response.text.replace("BADWORD", "")
        assert events[-1] == "[DONE]"


@pytest.mark.parametrize("model", MODELS)
async def test_personal_data_in_a_side_answer_is_redacted_in_a_stream(model: str) -> None:
    async with slots_gateway(GUARDED) as gateway:
        response = await gateway.client.post("/v1/chat/completions", json=_chat(model, PERSONAL, stream=True))
        events = sse_events(response.text)
        fields, finishes, call = _assembled(events)
        assert "@" not in response.text
        redacted = PERSONAL.replace(ADDRESS, "<EMAIL_ADDRESS>")
        if model == "function-call":
            assert call["name"] == "lookup"
            assert json.loads(call["arguments"]) == {"q": redacted}
            assert finishes == ["function_call"]
        else:
            assert fields["reasoning_content" if model == "reasoning" else "refusal"] == redacted
            assert finishes == ["stop"]
        if model == "reasoning":  # the thought's tail is checked and released before the answer begins
            assert fields["content"] == REASONED_ANSWER
            order = [
                key
                for event in events
                if isinstance(event, dict)
                for choice in event["choices"]
                for key in (choice.get("delta") or {})
                if key in ("reasoning_content", "content")
            ]
            assert order == sorted(order, key=lambda key: key == "content")
