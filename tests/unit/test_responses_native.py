"""``/v1/responses`` relayed natively to an upstream marked ``supports_responses``
(``gateway.responses.native``), over the scripted Responses upstream: guarded like the translated path,
under the upstream's own id."""

from __future__ import annotations

import json
from typing import Any

from openai.types.responses import Response

from guards.policy import Action, Policy, PolicyBook, Rule
from tests.support.native_gateway import native_gateway
from tests.support.responses_sdk import validate_event

BLOCK = Rule(guard="toxicity", action=Action.BLOCK)
REDACT = Rule(guard="pii", action=Action.REDACT)


def book(output: list[Rule] | None = None, input: list[Rule] | None = None) -> PolicyBook:
    return PolicyBook(default=Policy(input=input or [], output=output or []))


def events_of(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        if block.strip():
            event = json.loads(block.split("\n", 1)[1].removeprefix("data: "))
            validate_event(event)
            events.append(event)
    return events


async def test_a_native_response_keeps_the_upstreams_id_and_stateful_fields() -> None:
    async with native_gateway(book([BLOCK])) as gw:
        earlier = (await gw.respond("native", input="Hi.")).json()["id"]
        answer = await gw.respond("native", input="Hello there.", store=True, previous_response_id=earlier)
        sent = gw.received("native")
    assert answer.status_code == 200, answer.text
    response = Response.model_validate(answer.json())
    assert response.id.startswith("resp_up")  # the upstream's, so GET /v1/responses/{id} finds it
    assert response.output_text == "Hello there."
    assert response.previous_response_id == earlier
    assert answer.json()["guardrails"]["output"][0]["decision"] == "pass"
    assert sent["input"] == "Hello there."
    assert sent["store"] is True
    assert sent["previous_response_id"] == earlier


async def test_stateful_fields_are_still_refused_for_a_translated_upstream() -> None:
    async with native_gateway(book()) as gw:
        answer = await gw.respond("echo", input="Hi", previous_response_id="resp_old")
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "previous_response_id"


async def test_a_native_stream_is_guarded_and_assembled_under_the_upstreams_id() -> None:
    async with native_gateway(book([BLOCK])) as gw:
        answer = await gw.respond("native", input="Hello there, friend.", stream=True)
    events = events_of(answer.text)
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    final = Response.model_validate(events[-1]["response"])
    assert final.id.startswith("resp_up")
    assert events[0]["response"]["id"] == final.id
    assert final.output_text == "Hello there, friend."
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["response"]["guardrails"]["output"][0]["decision"] == "pass"


async def test_a_stored_response_is_retrieved_and_cancelled_through_the_native_upstream() -> None:
    async with native_gateway(book([BLOCK])) as gw:
        made = (await gw.respond("native", input="Keep me.")).json()
        got = await gw.client.get(f"/v1/responses/{made['id']}")
        cancelled = await gw.client.post(f"/v1/responses/{made['id']}/cancel", params={"model": "native"})
        toxic = (await gw.respond("native", input="you BADWORD")).json()
        # The upstream stored the toxic answer whole: retrieving it is guarded like a whole answer.
        got_toxic = await gw.client.get(f"/v1/responses/{toxic['id']}")
        missing = await gw.client.get("/v1/responses/resp_nope")
        tricky = await gw.client.get("/v1/responses/..%2F..%2Fmodels")
    assert got.status_code == 200
    assert Response.model_validate(got.json()).output_text == "Keep me."
    assert cancelled.json()["status"] == "cancelled"
    assert got_toxic.status_code == 200
    assert "BADWORD" not in got_toxic.text
    assert got_toxic.json()["incomplete_details"]["reason"] == "content_filter"
    assert missing.status_code == 404
    assert missing.json()["error"]["message"]
    assert tricky.status_code == 404


async def test_without_a_native_upstream_retrieval_is_an_openai_shaped_404() -> None:
    async with native_gateway(book()) as gw:
        answer = await gw.client.get("/v1/responses/resp_abc", params={"model": "echo"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


async def test_an_upstream_that_answers_404_is_served_through_translation_from_then_on() -> None:
    async with native_gateway(book([BLOCK])) as gw:
        first = await gw.respond("native-404", input="Hello there.")
        second = await gw.respond("native-404", input="Again.")
        native_asks = [body for body in gw.script.bodies if body["model"] == "native-404"]
        chat_asks = [body for body in gw.chat.bodies if body["model"] == "native-404"]
    assert first.status_code == 200
    assert second.status_code == 200
    assert len(native_asks) == 1  # asked natively once, remembered as not native
    assert len(chat_asks) == 2
    assert Response.model_validate(first.json()).id.startswith("resp_")


async def test_a_stateful_request_never_falls_back_on_a_404() -> None:
    async with native_gateway(book()) as gw:
        earlier = (await gw.respond("native", input="Hi.")).json()["id"]  # the caller's own
        answer = await gw.respond("native-404", input="Hi", previous_response_id=earlier)
    assert answer.status_code == 404  # the upstream's answer: its earlier turns cannot be translated
    assert answer.json()["error"]["code"] != "not_found"  # not the gateway's refusal of the id


async def test_a_native_answer_is_recorded_under_the_id_the_client_saw() -> None:
    async with native_gateway(book([BLOCK])) as gw:
        whole = (await gw.respond("native", input="Record me.")).json()
        streamed = await gw.respond("native", input="Record me too.", stream=True)
    final = events_of(streamed.text)[-1]["response"]
    recorded = [event.completion_id for event in gw.recorder.events]
    assert recorded == [whole["id"], final["id"]]


async def test_streaming_a_stored_response_again_is_a_400_naming_stream() -> None:
    async with native_gateway(book()) as gw:
        made = (await gw.respond("native", input="Keep me.")).json()["id"]
        again = await gw.client.get(f"/v1/responses/{made}", params={"stream": "true"})
        others = await gw.client.get("/v1/responses/resp_nope", params={"stream": "true"})
    assert again.status_code == 400
    assert again.json()["error"]["param"] == "stream"
    assert again.json() == others.json()  # the same for any id: nothing to probe
