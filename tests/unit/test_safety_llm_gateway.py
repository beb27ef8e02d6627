"""The ``safety_llm`` guard in the gateway, through the official openai SDK: a scripted model server on a
loopback socket plays Llama Guard (``tests/support/scripted_safety_llm``), the fake upstream echoes the
user's message as the answer. Input and output blocks, streams, ``/v1/moderations``, and a malformed
classifier answer under ``on_error`` open and closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast

import openai
import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.settings import FeedbackSettings, Settings, UpstreamSettings
from guards.policy import FailMode, GuardSpec, Policy, PolicyBook, Rule
from tests.support.fake_upstream import FakeUpstream
from tests.support.scripted_safety_llm import ScriptedSafetyModel, scripted_safety_model


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedSafetyModel]:
    with scripted_safety_model() as model:
        yield model


@asynccontextmanager
async def sdk(
    scripted: ScriptedSafetyModel, on_error: FailMode = FailMode.CLOSED
) -> AsyncIterator[openai.AsyncOpenAI]:
    rule = Rule(guard="safety", timeout_ms=10_000, on_error=on_error)
    settings = Settings(
        feedback=FeedbackSettings(record=False),
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
        guards={
            "safety": GuardSpec(type="safety_llm", config={"base_url": scripted.url, "model": "llama-guard"})
        },
        policies=PolicyBook(default=Policy(input=[rule], output=[rule])),
    )
    app = create_app(settings, upstream_transport=FakeUpstream().transport())
    async with AsyncTestClient(app) as client:
        base = str(client.base_url).rstrip("/") + "/v1"
        # Litestar's test client is an httpx client; the SDK's annotation names its own httpx build.
        http_client = cast(Any, client)
        yield openai.AsyncOpenAI(base_url=base, api_key="unused", http_client=http_client, max_retries=0)


def chat(content: str) -> list[Any]:
    return [{"role": "user", "content": content}]


def report(completion: Any) -> dict[str, Any]:
    found: dict[str, Any] = (completion.model_extra or {})["guardrails"]
    return found


async def test_a_safe_exchange_passes_both_ways(scripted: ScriptedSafetyModel) -> None:
    async with sdk(scripted) as client:
        completion = await client.chat.completions.create(model="echo", messages=chat("Capital of France?"))
    assert completion.choices[0].message.content == "Capital of France?"
    guardrails = report(completion)
    assert guardrails["input"]["guards"][0]["decision"] == "pass"
    assert guardrails["output"][0]["guards"][0]["decision"] == "pass"
    judged = [body["messages"] for body in scripted.bodies[-2:]]
    assert judged[1] == [  # the answer is judged as the agent's turn after the prompt
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Capital of France?"},
    ]


async def test_input_llama_guard_unsafe_s10_is_a_400_content_filter(scripted: ScriptedSafetyModel) -> None:
    async with sdk(scripted) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(model="echo", messages=chat("UNSAFE-HATE"))
    assert raised.value.code == "content_filter"
    body: Any = raised.value.body
    assert "hate" in str(body)


async def test_output_llama_guard_unsafe_s1_ends_the_choice_filtered(scripted: ScriptedSafetyModel) -> None:
    async with sdk(scripted) as client:
        completion = await client.chat.completions.create(model="echo", messages=chat("ANSWER-VIOLENT now"))
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content is None
    (guard,) = report(completion)["output"][0]["guards"]
    assert guard["decision"] == "block"
    assert guard["categories"] == ["violence"]


async def test_streamed_output_is_stopped_by_the_safety_model(scripted: ScriptedSafetyModel) -> None:
    async with sdk(scripted) as client:
        stream = await client.chat.completions.create(
            model="echo", messages=chat("A calm start, then ANSWER-VIOLENT text."), stream=True
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert "ANSWER-VIOLENT" not in text
    assert finishes == ["content_filter"]


async def test_malformed_classifier_answer_fails_open_with_the_reason(scripted: ScriptedSafetyModel) -> None:
    async with sdk(scripted, FailMode.OPEN) as client:
        completion = await client.chat.completions.create(model="echo", messages=chat("GARBLED please"))
    assert completion.choices[0].message.content == "GARBLED please"
    (guard,) = report(completion)["input"]["guards"]
    assert guard["decision"] == "error"
    assert "malformed answer: answer is neither safe nor unsafe" in guard["error"]


async def test_malformed_classifier_answer_fails_closed(scripted: ScriptedSafetyModel) -> None:
    """Closed on input: the request is refused as "could not check" (503), not as harmful (400)."""
    async with sdk(scripted, FailMode.CLOSED) as client:
        with pytest.raises(openai.InternalServerError) as raised:
            await client.chat.completions.create(model="echo", messages=chat("GARBLED please"))
    assert raised.value.status_code == 503
    assert "safety guard could not check the request" in raised.value.message


async def test_malformed_classifier_answer_on_output_fails_closed(scripted: ScriptedSafetyModel) -> None:
    async with sdk(scripted, FailMode.CLOSED) as client:
        completion = await client.chat.completions.create(model="echo", messages=chat("ANSWER-MUDDLED"))
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content is None
    (guard,) = report(completion)["output"][0]["guards"]
    assert guard["decision"] == "block"
    assert "malformed answer" in guard["error"]


async def test_failing_classifier_server_fails_closed_not_500(scripted: ScriptedSafetyModel) -> None:
    async with sdk(scripted, FailMode.CLOSED) as client:
        with pytest.raises(openai.InternalServerError) as raised:
            await client.chat.completions.create(model="echo", messages=chat("SERVER-ERROR"))
    assert raised.value.status_code == 503


async def test_moderations_report_openai_and_safety_llm_categories(scripted: ScriptedSafetyModel) -> None:
    async with sdk(scripted) as client:
        raw = await client.moderations.with_raw_response.create(input=["UNSAFE-MULTI", "Capital of France?"])
    unsafe, safe = raw.http_response.json()["results"]
    assert unsafe["flagged"] is True
    assert unsafe["categories"]["violence"] is True
    assert unsafe["categories"]["hate"] is True
    assert unsafe["categories"]["safety/hate"] is True
    assert unsafe["categories"]["self-harm"] is False
    assert unsafe["category_scores"]["safety/violence"] == pytest.approx(0.9)
    assert safe["flagged"] is False


async def test_request_cannot_loosen_a_safety_llm_threshold(scripted: ScriptedSafetyModel) -> None:
    """Every category has a default (0.5) to compare against, so 0.9 is a loosening, refused."""
    async with sdk(scripted) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(
                model="echo",
                messages=chat("UNSAFE-HATE"),
                extra_body={"guardrails": {"input": [{"guard": "safety", "thresholds": {"hate": 0.95}}]}},
            )
    assert raised.value.code != "content_filter"  # refused as a loosening, before any guard ran
    assert "thresholds.hate': cannot raise 0.5 to 0.95" in raised.value.message
