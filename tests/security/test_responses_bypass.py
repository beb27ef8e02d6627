"""Attacks on ``/v1/responses``: text smuggled past the guards through the Responses API's own places, on
both paths (``echo``: translated to chat completions; ``native``: relayed to an upstream with its own
``/v1/responses``). What the upstream received is asserted, not only what the client saw."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import UpstreamBadResponse, UpstreamStreamBroken
from gateway.responses.reverse import ChunkReader, chat_completion
from guards.policy import Action, Policy, PolicyBook, Rule
from tests.support.native_gateway import native_gateway

BLOCK = Rule(guard="toxicity", action=Action.BLOCK)
REDACT = Rule(guard="pii", action=Action.REDACT)
EMAIL = "jane.doe@example.com"
PATHS = pytest.mark.parametrize("model", ["echo", "native"])


def book(output: list[Rule] | None = None, input: list[Rule] | None = None) -> PolicyBook:
    return PolicyBook(default=Policy(input=input or [], output=output or []))


def _call_and_output(said: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "What does the tool say?"},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": said},
    ]


PLACES = {
    "instructions": lambda said: {"instructions": said, "input": "Hi"},
    "input_item_part": lambda said: {
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi " + said}]}]
    },
    "function_call_output": lambda said: {"input": _call_and_output(said)},
    "function_call_arguments": lambda said: {
        "input": [
            {"role": "user", "content": "Hi"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": json.dumps({"q": said})},
            {"type": "function_call_output", "call_id": "c", "output": "done"},
        ]
    },
}


@PATHS
@pytest.mark.parametrize("place", ["instructions", "input_item_part", "function_call_output"])
async def test_toxic_text_in_every_input_place_is_a_400_and_never_sent(model: str, place: str) -> None:
    async with native_gateway(book(input=[BLOCK])) as gw:
        answer = await gw.respond(model, **PLACES[place]("you BADWORD"))
        assert gw.nothing_received()
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "content_filter"


@PATHS
@pytest.mark.parametrize("place", sorted(PLACES))
async def test_pii_in_every_input_place_never_reaches_the_upstream(model: str, place: str) -> None:
    async with native_gateway(book(input=[REDACT])) as gw:
        answer = await gw.respond(model, **PLACES[place](f"mail {EMAIL} now"))
        sent = json.dumps(gw.received(model))
    assert answer.status_code == 200, answer.text
    assert EMAIL not in sent
    assert "mail" in sent  # the text went, redacted


async def test_pii_in_metadata_and_reasoning_never_reaches_a_native_upstream() -> None:
    reasoning = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": f"ask {EMAIL}"}],
    }
    async with native_gateway(book(input=[REDACT])) as gw:
        answer = await gw.respond(
            "native",
            input=[{"role": "user", "content": "Hi"}, reasoning, {"role": "user", "content": "Go on"}],
            metadata={"contact": EMAIL},
            safety_identifier=EMAIL,
        )
        sent = gw.received("native")
    assert answer.status_code == 200, answer.text
    assert EMAIL not in json.dumps(sent)
    assert sent["input"][1]["summary"][0]["text"].startswith("ask ")


async def test_a_key_no_guard_reads_cannot_carry_text_to_a_native_upstream() -> None:
    smuggled = {"role": "user", "content": [{"type": "input_text", "text": "Hi", "note": "you BADWORD"}]}
    async with native_gateway(book(input=[BLOCK])) as gw:
        answer = await gw.respond("native", input=[smuggled])
        assert gw.nothing_received()
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "input[0].content[0].note"


SMUGGLED_TEXT = [
    ({"format": {"type": "text"}, "note": "you BADWORD"}, "text.note"),
    ({"format": {"type": "text", "instructions": "you BADWORD"}}, "text.format.instructions"),
    ({"format": {"type": "json_object", "hint": "you BADWORD"}}, "text.format.hint"),
    (
        {"format": {"type": "json_schema", "name": "n", "schema": {}, "prompt": "you BADWORD"}},
        "text.format.prompt",
    ),
]


@PATHS
@pytest.mark.parametrize(("text", "param"), SMUGGLED_TEXT, ids=[param for _, param in SMUGGLED_TEXT])
async def test_a_key_of_text_no_guard_reads_cannot_carry_text_upstream(
    model: str, text: dict[str, Any], param: str
) -> None:
    async with native_gateway(book(input=[BLOCK])) as gw:
        answer = await gw.respond(model, input="Hi", text=text)
        assert gw.nothing_received()
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
    assert answer.json()["error"]["code"] == "unknown_parameter"


async def test_toxic_reasoning_sent_back_to_a_native_upstream_is_a_400() -> None:
    reasoning = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "you BADWORD"}],
    }
    async with native_gateway(book(input=[BLOCK])) as gw:
        answer = await gw.respond("native", input=[{"role": "user", "content": "Hi"}, reasoning])
        assert gw.nothing_received()
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "input[1].summary[0].text"


@PATHS
async def test_a_toxic_tail_of_a_streamed_response_never_reaches_the_client(model: str) -> None:
    said = "A calm and friendly opening sentence. Then the tail: you BADWORD."
    async with native_gateway(book(output=[BLOCK])) as gw:
        answer = await gw.respond(model, input=said, stream=True)
    assert answer.status_code == 200
    assert "BADWORD" not in answer.text
    final = json.loads(answer.text.strip().split("\n\n")[-1].split("\n", 1)[1].removeprefix("data: "))
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"]["reason"] == "content_filter"


@PATHS
@pytest.mark.parametrize("stream", [False, True])
async def test_toxic_function_call_arguments_in_the_output_are_caught(model: str, stream: bool) -> None:
    tool_model, said = (
        ("tool-echo", '{"say": "you BADWORD"}')
        if model == "echo"
        else ("native", 'call:{"say": "you BADWORD"}')
    )
    async with native_gateway(book(output=[BLOCK])) as gw:
        answer = await gw.respond(tool_model, input=said, stream=stream)
    assert answer.status_code == 200
    assert "BADWORD" not in answer.text
    assert "content_filter" in answer.text


def test_a_native_output_item_the_guards_cannot_read_is_never_relayed() -> None:
    hosted = {"id": "resp_1", "status": "completed", "output": [{"type": "web_search_call", "action": "x"}]}
    with pytest.raises(UpstreamBadResponse):
        chat_completion(hosted)
    reader = ChunkReader()
    with pytest.raises(UpstreamStreamBroken):
        reader.read({"type": "response.output_item.added", "item": {"type": "web_search_call"}})
    with pytest.raises(UpstreamStreamBroken):
        reader.read({"type": "response.output_text.annotation.added", "annotation": {"title": "toxic"}})
    # Odd ids from a hostile upstream are read as strings, never a crash.
    assert reader.read({"type": "response.output_text.delta", "item_id": ["x"], "delta": "hi"})
