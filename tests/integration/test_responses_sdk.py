"""The Responses API through the official openai SDK, on real parts: llama.cpp answers (it has no
``/v1/responses``: the gateway serves it through chat completions), the stub's echo model lets the output
guards catch a toxic answer, and the default policy's input guards refuse a toxic request."""

from __future__ import annotations

import openai
import pytest

from tests.support.servers import LLAMA_ALIAS, StubState


def test_a_response_from_llama_cpp_through_the_sdk(sync_client: openai.OpenAI) -> None:
    response = sync_client.responses.create(
        model=LLAMA_ALIAS, instructions="Answer in one word.", input="Name a colour.", max_output_tokens=8
    )
    assert response.id.startswith("resp_")
    assert response.status in ("completed", "incomplete")  # 8 tokens may cut the tiny model short
    if response.status == "incomplete":
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text.strip()
    assert response.usage is not None
    assert response.usage.output_tokens > 0
    assert (response.model_extra or {})["guardrails"]["output"][0]["decision"] == "pass"


def test_a_streamed_response_from_llama_cpp_is_read_by_the_sdk(sync_client: openai.OpenAI) -> None:
    stream = sync_client.responses.create(
        model=LLAMA_ALIAS, input="Name a fruit.", max_output_tokens=24, stream=True
    )
    events = list(stream)
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert deltas
    assert [e.sequence_number for e in events] == list(range(len(events)))
    last = events[-1]
    # The tiny model may use all 24 tokens: then the Response is incomplete, for that reason.
    assert last.type in ("response.completed", "response.incomplete")
    final = last.response
    assert final.output_text == "".join(deltas)
    if last.type == "response.incomplete":
        assert final.incomplete_details is not None
        assert final.incomplete_details.reason == "max_output_tokens"
    assert (final.model_extra or {})["guardrails"]["output"][0]["decision"] == "pass"


def test_a_toxic_answer_is_an_incomplete_response_with_a_refusal(
    sync_client: openai.OpenAI, stub: tuple[str, StubState]
) -> None:
    raw = sync_client.responses.with_raw_response.create(
        model="stub-echo-unguarded-input", input="You are a fucking idiot and everyone hates you."
    )
    response = raw.parse()
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    assert [part.type for item in response.output if item.type == "message" for part in item.content] == [
        "refusal"
    ]
    assert "fucking" not in raw.http_response.text
    assert raw.headers["x-hhh-guardrails"].startswith("output=block(toxicity)")


def test_a_toxic_request_is_refused_with_the_responses_parameter(sync_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sync_client.responses.create(
            model=LLAMA_ALIAS,
            input=[
                {"role": "user", "content": "Hello."},
                {"role": "user", "content": "You are a fucking idiot and everyone hates you."},
            ],
        )
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["code"] == "content_filter"
    assert error["param"].startswith("input[1]")
