"""The official SDK's Responses client through a real gateway process to a scripted upstream that speaks
``/v1/responses`` natively (marked ``supports_responses``), with the real toxicity and PII guards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from tests.support.responses_upstream import ResponsesScript, native_server
from tests.support.servers import gateway_process


@pytest.fixture(scope="module")
def native() -> Iterator[tuple[str, ResponsesScript]]:
    script = ResponsesScript()
    with native_server(script) as url:
        yield url, script


@pytest.fixture(scope="module")
def client(
    native: tuple[str, ResponsesScript], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    url, _ = native
    logs: Path = tmp_path_factory.mktemp("native-gateway")
    config = {
        "data_dir": str(logs / "data"),
        "upstreams": [{"name": "native", "url": url, "models": ["native"], "supports_responses": True}],
        "guards": {"toxicity": {"type": "toxicity"}, "pii": {"type": "pii"}},
        "policies": {
            "default": {
                "input": [{"guard": "pii", "action": "redact"}],
                "output": [{"guard": "toxicity", "action": "block"}],
            }
        },
    }
    path = logs / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    with (
        gateway_process(path, logs) as base_url,
        openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60) as sdk,
    ):
        yield sdk


def test_create_returns_the_upstreams_response_guarded(
    client: openai.OpenAI, native: tuple[str, ResponsesScript]
) -> None:
    _, script = native
    response = client.responses.create(model="native", input="Write to jane.doe@example.com please.")
    assert response.id.startswith("resp_up")
    assert "jane.doe@example.com" not in str(script.bodies[-1])  # redacted before it was sent
    assert (response.model_extra or {})["guardrails"]["output"][0]["decision"] == "pass"
    assert response.output_text == "Write to jane.doe@example.com please."  # restored for its sender
    again = client.responses.retrieve(response.id)
    assert again.id == response.id
    # The gateway keeps no placeholder values: a stored answer is retrieved as the upstream has it.
    assert "jane.doe@example.com" not in again.output_text
    assert again.output_text.startswith("Write to <EMAIL_ADDRESS")


def test_a_created_stream_and_the_stream_helper_assemble_the_response(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="native", input="A calm, kind sentence.", stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "A calm, kind sentence."
    with client.responses.stream(model="native", input="Another calm sentence.") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.id.startswith("resp_up")
    assert final.output_text == "Another calm sentence."


def test_a_toxic_streamed_answer_never_reaches_the_sdk(client: openai.OpenAI) -> None:
    said = "Thank you for asking. You are a fucking idiot and everyone hates you."
    # The SDK's stream helper returns a final response only on response.completed; an incomplete one
    # ends with response.incomplete, as OpenAI ends it, so the events are read.
    with client.responses.stream(model="native", input=said) as stream:
        events = list(stream)
    texts = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "fucking" not in "".join(texts)
    assert events[-1].type == "response.incomplete"
    final = events[-1].response
    assert final.status == "incomplete"
    assert final.incomplete_details is not None
    assert final.incomplete_details.reason == "content_filter"


def test_the_sdk_cancels_a_background_response(client: openai.OpenAI) -> None:
    made = client.responses.create(model="native", input="A calm, kind sentence.", background=True)
    cancelled = client.responses.cancel(made.id)
    assert cancelled.id == made.id
    assert cancelled.status == "cancelled"
    assert cancelled.output_text == "A calm, kind sentence."  # still guarded: the output guards passed it


def test_the_sdk_reads_an_id_the_gateway_never_made_as_not_found(client: openai.OpenAI) -> None:
    for call in (client.responses.retrieve, client.responses.cancel):
        with pytest.raises(openai.NotFoundError) as refused:
            call("resp_up" + "0" * 32)
        assert refused.value.code == "not_found"
