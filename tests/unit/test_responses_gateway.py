"""``POST /v1/responses`` on the guarded path: translated to chat completions, guarded, recorded, and
answered the Responses way (``gateway.responses``), over the fake upstream's echo model."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from openai.types.responses import Response, ResponseStreamEvent

from feedback.events import CompletionEvent
from guards.policy import Action, Rule
from tests.support.fake_upstream import DEFAULT_REVISION
from tests.support.revise_gateway import book, gateway, revise

BLOCK = Rule(guard="toxicity", action=Action.BLOCK)
EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def _events(text: str) -> list[dict[str, Any]]:
    """Each ``event: <type>`` / ``data: <json>`` frame's data; the type named twice must agree."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        named, data = block.split("\n", 1)
        event = json.loads(data.removeprefix("data: "))
        assert named == f"event: {event['type']}"
        EVENTS.validate_python(event)  # every event is one the SDK knows, with the fields it requires
        events.append(event)
    return events


async def _respond(gw: Any, **body: Any) -> Any:
    return await gw.client.post("/v1/responses", json={"model": "echo", **body})


async def test_a_response_is_the_guarded_chat_answer_in_the_responses_shape() -> None:
    async with gateway(book(BLOCK)) as gw:
        answer = await _respond(gw, input="Hello there.", instructions="Be brief.")
        sent = gw.upstream.bodies[-1]
    assert answer.status_code == 200
    response = Response.model_validate(answer.json())
    assert response.status == "completed"
    assert response.output_text == "Hello there."
    assert response.id.startswith("resp_")
    assert answer.json()["guardrails"]["output"][0]["decision"] == "pass"
    # The upstream was asked in chat completions: the instructions first, then the input.
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there."},
    ]
    assert "input" not in sent


async def test_an_output_block_is_an_incomplete_response_with_a_refusal() -> None:
    async with gateway(book(BLOCK)) as gw:
        answer = await _respond(gw, input="you BADWORD")
    response = Response.model_validate(answer.json())
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    (message,) = response.output
    assert message.type == "message"
    assert [part.type for part in message.content] == ["refusal"]
    assert "BADWORD" not in answer.text


async def test_an_input_block_is_a_400_naming_the_responses_parameter() -> None:
    async with gateway(book(input=[BLOCK])) as gw:
        said = [{"role": "user", "content": "hi"}, {"role": "user", "content": "BADWORD"}]
        answer = await _respond(gw, input=said)
        assert gw.upstream.bodies == []  # never sent
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "content_filter"
    assert error["param"].startswith("input[1]")
    assert "messages[" not in error["message"]
    (guard,) = error["guardrails"]["input"]["guards"]
    assert all(span["where"].startswith("input[1]") for span in guard["spans"])


async def test_a_stream_is_responses_events_ending_with_the_report() -> None:
    async with gateway(book(BLOCK)) as gw:
        answer = await _respond(gw, input="A calm answer. It goes on calmly.", stream=True)
    events = _events(answer.text)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "A calm answer. It goes on calmly."
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert final["guardrails"]["output"][0]["decision"] == "pass"


async def test_a_streamed_output_block_ends_incomplete_and_never_streams_the_text() -> None:
    async with gateway(book(BLOCK)) as gw:
        answer = await _respond(gw, input="A calm start here. Then you BADWORD.", stream=True)
    events = _events(answer.text)
    assert "BADWORD" not in answer.text
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"]["reason"] == "content_filter"


async def test_a_streamed_response_is_revised_like_a_chat_stream() -> None:
    async with gateway(book(revise())) as gw:
        answer = await _respond(gw, input="you BADWORD", stream=True)
    events = _events(answer.text)
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == DEFAULT_REVISION
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["guardrails"]["output"][0]["revised"] is True


async def test_a_response_is_recorded_like_a_chat_call_under_the_id_the_client_saw() -> None:
    async with gateway(book(BLOCK)) as gw:
        gw.app_services.completions.recorder = gw.recorder
        whole = (await _respond(gw, input="Name a colour.")).json()
        streamed = _events((await _respond(gw, input="Name a fruit.", stream=True)).text)
    first, second = [e for e in gw.recorder.events if isinstance(e, CompletionEvent)]
    assert (first.endpoint, second.endpoint) == ("responses", "responses")
    assert first.completion_id == whole["id"]
    assert second.completion_id == streamed[-1]["response"]["id"]
    assert first.request["messages"] == [{"role": "user", "content": "Name a colour."}]
    assert first.choices[0]["message"]["content"] == "Name a colour."
    assert second.choices[0]["message"]["content"] == "Name a fruit."


async def test_an_unguarded_response_is_still_translated() -> None:
    async with gateway(book()) as gw:
        answer = await _respond(gw, input="Plain.")
    assert Response.model_validate(answer.json()).output_text == "Plain."


async def test_a_bad_responses_request_is_a_400_naming_its_parameter() -> None:
    async with gateway(book()) as gw:
        stateful = await _respond(gw, input="x", previous_response_id="resp_123")
        wrong = await _respond(gw, input=42)
    assert stateful.status_code == 400
    assert stateful.json()["error"]["param"] == "previous_response_id"
    assert wrong.status_code == 400
    assert wrong.json()["error"]["param"] == "input"
