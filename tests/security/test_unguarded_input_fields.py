"""Threat: toxic text or personal data in request fields no input guard read, reaching the upstream.

Every field a model reads is judged like a message's content: a toxic one is a 400 naming it, personal
data is redacted before the upstream (and the recorded event, see test_recorded_event_leaks) sees it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from guards.policy import Policy
from tests.support.servers import StubState
from tests.support.slots_upstream import BLOCK_AND_REDACT, slots_gateway

GUARDED = Policy(input=BLOCK_AND_REDACT)
ADDRESS = "ann.smith@example.org"

Body = dict[str, Any]


def _chat(**extra: Any) -> Body:
    return {"model": "content", "messages": [{"role": "user", "content": "hello"}], **extra}


def _history(message: Body) -> Body:
    return {"model": "content", "messages": [message, {"role": "user", "content": "hello"}]}


def _tool(
    description: str = "Look a thing up.", schema_text: str = "the query", name: str = "lookup"
) -> Body:
    parameters = {"type": "object", "properties": {"q": {"type": "string", "description": schema_text}}}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def _schema_format(text: str) -> Body:
    schema = {"type": "object", "properties": {"a": {"type": "string", "description": text}}}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


# Each case: the request with ``text`` planted in one field, and where the gateway says it found it.
CASES: dict[str, tuple[Callable[[str], Body], str]] = {
    "tool description": (lambda t: _chat(tools=[_tool(description=t)]), "tools[0].function.description"),
    "tool parameter description": (
        lambda t: _chat(tools=[_tool(schema_text=t)]),
        "tools[0].function.parameters.properties.q.description",
    ),
    "legacy function_call arguments": (
        lambda t: _history(
            {"role": "assistant", "function_call": {"name": "f", "arguments": json.dumps({"q": t})}}
        ),
        "messages[0].function_call.arguments",
    ),
    "message name": (
        lambda t: {"model": "content", "messages": [{"role": "user", "name": t, "content": "hello"}]},
        "messages[0].name",
    ),
    "assistant refusal field": (
        lambda t: _history({"role": "assistant", "content": None, "refusal": t}),
        "messages[0].refusal",
    ),
    "assistant refusal part": (
        lambda t: _history({"role": "assistant", "content": [{"type": "refusal", "refusal": t}]}),
        "messages[0].content[0].refusal",
    ),
    "tool call name": (
        lambda t: _history(
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": t, "arguments": "{}"}}],
            }
        ),
        "messages[0].tool_calls[0].function.name",
    ),
    "response_format schema": (
        lambda t: _chat(response_format=_schema_format(t)),
        "response_format.json_schema.schema.properties.a.description",
    ),
    "user": (lambda t: _chat(user=t), "user"),
    "a field the gateway does not know": (lambda t: _chat(suffix=t), "suffix"),
    "metadata value": (lambda t: _chat(metadata={"note": t}), "metadata[0].value"),
    "metadata key": (lambda t: _chat(metadata={t: "x"}), "metadata[0].key"),
}

LEGACY_CASES: dict[str, tuple[Callable[[str], Body], str]] = {
    "suffix": (lambda t: {"model": "content", "prompt": "hello", "suffix": t}, "suffix"),
    "user": (lambda t: {"model": "content", "prompt": "hello", "user": t}, "user"),
    "metadata": (
        lambda t: {"model": "content", "prompt": "hello", "metadata": {"k": t}},
        "metadata[0].value",
    ),
}


@pytest.mark.parametrize("case", CASES)
async def test_toxic_text_in_a_side_field_is_refused_before_the_upstream(case: str) -> None:
    build, where = CASES[case]
    async with slots_gateway(GUARDED) as gateway:
        response = await gateway.client.post("/v1/chat/completions", json=build("you BADWORD"))
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "content_filter"
        assert response.json()["error"]["param"] == where
        assert gateway.upstream.bodies == []


@pytest.mark.parametrize("case", CASES)
async def test_personal_data_in_a_side_field_is_redacted_before_the_upstream(case: str) -> None:
    build, _ = CASES[case]
    async with slots_gateway(GUARDED) as gateway:
        response = await gateway.client.post("/v1/chat/completions", json=build(f"write to {ADDRESS}"))
        assert response.status_code == 200
        sent = json.dumps(gateway.upstream.bodies[-1])
        assert ADDRESS not in sent
        assert "EMAIL_ADDRESS" in sent
        assert ADDRESS not in response.text  # nor does the report repeat it


@pytest.mark.parametrize("case", LEGACY_CASES)
async def test_legacy_side_fields_are_guarded_too(case: str) -> None:
    build, where = LEGACY_CASES[case]
    async with slots_gateway(GUARDED) as gateway:
        refused = await gateway.client.post("/v1/completions", json=build("you BADWORD"))
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == where
        response = await gateway.client.post("/v1/completions", json=build(f"write to {ADDRESS}"))
        assert response.status_code == 200
        assert ADDRESS not in json.dumps(gateway.upstream.bodies[-1])


async def test_a_redacted_name_stays_a_valid_openai_name() -> None:
    async with slots_gateway(GUARDED) as gateway:
        body = _history(
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": ADDRESS, "arguments": "{}"}}
                ],
            }
        )
        body["tools"] = [_tool(name=ADDRESS)]
        response = await gateway.client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200
        sent = gateway.upstream.bodies[-1]
        call_name = sent["messages"][0]["tool_calls"][0]["function"]["name"]
        assert call_name == sent["tools"][0]["function"]["name"] == "_EMAIL_ADDRESS_1_"  # still matches


def test_real_pii_guard_redacts_side_fields_before_the_upstream(
    sync_client: openai.OpenAI, stub: tuple[str, StubState]
) -> None:
    """The real presidio guard, a real socket: e-mail, phone and card numbers in fields no guard read."""
    _, state = stub
    text = "Call 212-555-0187 or mail ann.smith@example.org; card 4111 1111 1111 1111."
    tool = _tool(description=text, schema_text=text)
    sync_client.chat.completions.create(
        model="stub-echo",
        messages=[{"role": "user", "content": "hello"}],
        tools=[tool],  # type: ignore[list-item]
        user="ann.smith@example.org",
        metadata={"note": text},
        extra_body={"suffix": text},
    )
    sent = json.dumps(state.bodies[-1])
    for secret in ("212-555-0187", "ann.smith@example.org", "4111 1111 1111 1111"):
        assert secret not in sent
