"""The reward guard grades answers: each verdict carries its reward (of the answer after the request's
prompt), an answer below a rule's floor is flagged or annotated, the rewards go to a histogram per served
model and reward model, and its rules are checked at start-up, naming the key."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.settings import settings_from_mapping
from guards.config_errors import ConfigValidationError
from guards.metrics import MAX_MODEL_LABELS, GuardMetrics
from guards.models.reward_model import RewardModelConfig, load_reward_model
from guards.policy import PolicyError
from guards.registry import GuardResources
from guards.reward import RewardGuard
from guards.runner import RunnerPool
from guards.verdict import JudgeContext
from tests.support.fake_upstream import FakeUpstream
from tests.support.reward_models import build_reward_model

PROMPT = "Can you help me with my garden?"
# Rewards of either sign from the test's model (random weights): about 1.0, 0.4, 11.9, -6.6, -0.2.
ANSWERS = [
    "Of course! I'd be glad to help.",
    "Ugh, figure it out yourself.",
    "Plant in spring, water weekly.",
    "No.",
    "Water it.",
]
KEY = "hhh-reward-unit-key"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_reward_model(tmp_path_factory.mktemp("reward") / "bert", "bert")


@pytest.fixture(scope="module")
def expected(model_dir: Path) -> list[float]:
    """The rewards of ANSWERS after PROMPT, from the loaded model itself."""
    return load_reward_model(_config(model_dir)).predict([(PROMPT, answer) for answer in ANSWERS])


def _config(model_dir: Path) -> RewardModelConfig:
    return RewardModelConfig(model=str(model_dir), precision="fp32")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> GuardMetrics:
    return GuardMetrics(registry)


@pytest.fixture
async def guard(model_dir: Path, metrics: GuardMetrics, tmp_path: Path) -> AsyncIterator[RewardGuard]:
    pool = RunnerPool(metrics)
    reward = RewardGuard("reward", _config(model_dir), GuardResources(pool, metrics, tmp_path))
    await reward.start()
    yield reward
    await pool.close()


def _context(prompt: str = PROMPT, model: str = "served-model") -> JudgeContext:
    return JudgeContext(prompt=prompt, model=model)


async def test_every_answer_gets_its_reward_and_none_is_flagged_without_a_floor(
    guard: RewardGuard, expected: list[float]
) -> None:
    verdicts = await guard.judge(ANSWERS, guard.default_thresholds, _context())
    assert [v.scores["reward"] for v in verdicts] == pytest.approx(expected, abs=1e-5)
    assert all(v.allowed and not v.categories for v in verdicts)
    assert len(set(expected)) == len(ANSWERS)  # distinct rewards: a floor can fall between them


async def test_answers_scoring_below_the_floor_are_flagged_those_at_or_above_it_pass(
    guard: RewardGuard, expected: list[float]
) -> None:
    middle = sorted(expected)[2]
    verdicts = await guard.judge(ANSWERS, {"reward": middle}, _context())
    flagged = [v.scores["reward"] < middle for v in verdicts]
    assert flagged.count(True) == 2  # the two lowest only: a floor, where toxicity's threshold is a ceiling
    for verdict, low in zip(verdicts, flagged, strict=True):
        assert verdict.allowed is not low
        assert verdict.categories == (["reward"] if low else [])


async def test_the_reward_is_of_the_answer_after_the_request_prompt(
    guard: RewardGuard, model_dir: Path
) -> None:
    answer = ANSWERS[0]
    other_prompt = "Tell me something rude."
    (asked,) = await guard.judge([answer], {}, _context(prompt=other_prompt))
    direct = load_reward_model(_config(model_dir)).predict([(other_prompt, answer), (PROMPT, answer)])
    assert asked.scores["reward"] == pytest.approx(direct[0], abs=1e-5)
    assert direct[0] != pytest.approx(direct[1], abs=1e-3)  # the prompt matters to this model


async def test_rewards_are_observed_per_served_model_and_reward_model_in_logit_buckets(
    guard: RewardGuard, registry: CollectorRegistry, model_dir: Path, expected: list[float]
) -> None:
    await guard.judge(ANSWERS, {}, _context(model="model-a"))
    await guard.judge(ANSWERS[:1], {}, _context(model="model-b"))
    labels = {"model": "model-a", "reward_model": str(model_dir)}
    assert registry.get_sample_value("hhh_answer_reward_count", labels) == len(ANSWERS)
    assert registry.get_sample_value("hhh_answer_rewards_sum", labels) == pytest.approx(
        sum(expected), abs=1e-4
    )
    assert min(expected) < -1 < 1 < max(expected)
    for bound in (-8.0, -4.0, -0.5, 0.0, 0.5, 2.0, 8.0):  # either sign: a reward is a logit
        below = sum(reward <= bound for reward in expected)
        assert registry.get_sample_value("hhh_answer_reward_bucket", {**labels, "le": str(bound)}) == below
    b_labels = {"model": "model-b", "reward_model": str(model_dir)}
    assert registry.get_sample_value("hhh_answer_reward_count", b_labels) == 1


def test_model_label_values_are_bounded_and_a_nan_reward_is_not_observed() -> None:
    registry = CollectorRegistry()
    metrics = GuardMetrics(registry)
    for number in range(MAX_MODEL_LABELS + 20):
        metrics.observe_reward(f"model-{number}", "rm", 1.0)
    metrics.observe_reward("model-0", "rm", math.nan)
    series = {s.labels["model"] for m in registry.collect() for s in m.samples if s.name.endswith("_count")}
    assert len(series) == MAX_MODEL_LABELS + 1
    assert (
        registry.get_sample_value("hhh_answer_reward_count", {"model": "other", "reward_model": "rm"}) == 20
    )
    assert (
        registry.get_sample_value("hhh_answer_reward_count", {"model": "model-0", "reward_model": "rm"}) == 1
    )


async def test_a_model_that_is_not_a_reward_model_fails_at_start_naming_the_guards_key(
    tmp_path: Path,
) -> None:
    two = build_reward_model(tmp_path / "two", "bert", labels=2)
    pool = RunnerPool()
    reward = RewardGuard("quality", _config(two), GuardResources(pool, None, tmp_path))
    with pytest.raises(ConfigValidationError, match=r"^guards\.quality\.config\.model: .*one output"):
        await reward.start()
    await pool.close()


# --- in the gateway ------------------------------------------------------------------------------------


def _settings(model_dir: Path, rule: dict[str, Any], stream: dict[str, Any] | None = None) -> dict[str, Any]:
    policy: dict[str, Any] = {"output": [{"guard": "reward", "on_error": "open", **rule}]}
    if stream is not None:
        policy["stream"] = stream
    return {
        "feedback": {"record": False},
        "auth": {"keys": [{"tenant": "t", "sha256": hash_key(KEY)}]},
        "upstreams": [{"name": "fake", "url": "http://fake.test/v1"}],
        "guards": {"reward": {"type": "reward", "config": {"model": str(model_dir), "precision": "fp32"}}},
        "policies": {"default": policy},
    }


@asynccontextmanager
async def _client(
    model_dir: Path, rule: dict[str, Any], stream: dict[str, Any] | None = None
) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = settings_from_mapping(_settings(model_dir, rule, stream), environ={})
    app = create_app(settings, upstream_transport=FakeUpstream().transport())
    async with AsyncTestClient(app) as client:
        client.headers["authorization"] = f"Bearer {KEY}"
        yield client


def _echo(*answers: str, **extra: Any) -> dict[str, Any]:
    """The fake's echo model answers choice i with part i of the user's text (``||`` between parts)."""
    return {"model": "echo", "n": len(answers), "messages": [{"role": "user", "content": "||".join(answers)}],
            **extra}  # fmt: skip


async def test_the_report_carries_each_choices_reward_and_flags_the_one_below_the_floor(
    model_dir: Path,
) -> None:
    prompt = "||".join(ANSWERS[:2])  # the echo's prompt is the user's text
    rewards = load_reward_model(_config(model_dir)).predict([(prompt, answer) for answer in ANSWERS[:2]])
    floor = sum(rewards) / 2
    async with _client(model_dir, {"action": "flag", "thresholds": {"reward": floor}}) as client:
        response = await client.post("/v1/chat/completions", json=_echo(*ANSWERS[:2]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["message"]["content"] for c in body["choices"]] == ANSWERS[:2]  # graded, never changed
    graded = [choice["guards"][0] for choice in body["guardrails"]["output"]]
    assert [g["scores"]["reward"] for g in graded] == pytest.approx(rewards, abs=1e-3)  # negative ones too
    assert [g["decision"] for g in graded] == ["pass" if r >= floor else "flag" for r in rewards]
    assert "output=flag(reward)" in response.headers["x-hhh-guardrails"]


async def test_annotate_appends_the_disclaimer_to_low_answers_only(model_dir: Path) -> None:
    prompt = "||".join(ANSWERS[:2])
    rewards = load_reward_model(_config(model_dir)).predict([(prompt, answer) for answer in ANSWERS[:2]])
    async with _client(
        model_dir, {"action": "annotate", "thresholds": {"reward": sum(rewards) / 2}}
    ) as client:
        body = (await client.post("/v1/chat/completions", json=_echo(*ANSWERS[:2]))).json()
    low = rewards.index(min(rewards))
    for index, choice in enumerate(body["choices"]):
        annotated = choice["message"]["content"] != ANSWERS[index]
        assert annotated is (index == low)
        assert choice["message"]["content"].startswith(ANSWERS[index])


@pytest.mark.parametrize("mode", ["buffer", "stream_first"])
async def test_on_a_stream_the_guard_grades_the_whole_answer_once(model_dir: Path, mode: str) -> None:
    """A window's reward is no answer's: the stream guard judges grading rules once, on each choice's
    whole content as the client got it, never on its windows."""
    answer = "Plant in spring and water weekly. Feed every two weeks once they flower. Check the weight."
    (whole,) = load_reward_model(_config(model_dir)).predict([(answer, answer)])
    async with _client(model_dir, {"action": "flag"}, stream={"mode": mode}) as client:
        response = await client.post("/v1/chat/completions", json={**_echo(answer), "stream": True})
    assert response.status_code == 200
    events = [
        line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: {")
    ]
    report = json.loads(events[-1])["guardrails"]["output"][0]
    assert report["windows"] == 1  # no rule judges windows: the one report is the grade
    (graded,) = report["guards"]
    assert graded["scores"]["reward"] == pytest.approx(whole, abs=1e-3)
    parts = [
        (choice.get("delta") or {}).get("content") or ""
        for event in events
        for choice in json.loads(event).get("choices") or ()
    ]
    assert "".join(parts) == answer
    assert len([part for part in parts if part]) > 3  # released as it came, not held for a window


# --- configuration errors name the key -----------------------------------------------------------------


def _rule(**settings: Any) -> dict[str, Any]:
    return {"guard": "reward", "action": "flag", "on_error": "open", **settings}


@pytest.mark.parametrize(
    ("policy", "key"),
    [
        ({"output": [_rule(action="block")]}, "policies.default.output[0].action"),
        ({"output": [_rule(action="revise")]}, "policies.default.output[0].action"),
        ({"output": [_rule(on_error="closed")]}, "policies.default.output[0].on_error"),
        (
            {"output": [{"guard": "reward", "action": "flag"}]},
            "policies.default.output[0].on_error",
        ),  # closed
        ({"input": [_rule()]}, "policies.default.input[0].guard"),
        (
            {"output": [_rule(thresholds={"reward": math.nan})]},
            "policies.default.output[0].thresholds.reward",
        ),
        ({"output": [_rule(thresholds={"quality": 1.0})]}, "policies.default.output[0].thresholds"),
    ],
)
def test_a_reward_rule_that_would_withhold_or_misread_answers_is_refused_naming_the_key(
    model_dir: Path, policy: dict[str, Any], key: str
) -> None:
    raw = {**_settings(model_dir, {}), "policies": {"default": policy}}
    with pytest.raises(PolicyError) as caught:
        create_app(settings_from_mapping(raw, environ={}))
    assert str(caught.value).startswith(key), str(caught.value)


def test_a_floor_is_any_finite_number_on_the_reward_models_scale(model_dir: Path) -> None:
    raw = _settings(model_dir, {"action": "annotate", "thresholds": {"reward": -3.5}})
    create_app(settings_from_mapping(raw, environ={}))  # no error: a logit, not a probability


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"modle": "x"}, "guards.reward.config"),
        ({"model": "x", "max_length": 0}, "guards.reward.config.max_length"),
    ],
)
def test_reward_guard_config_errors_name_the_key(config: dict[str, Any], key: str) -> None:
    from guards.registry import build_guards

    raw = {"guards": {"reward": {"type": "reward", "config": config}}}
    settings = settings_from_mapping(raw, environ={})
    with pytest.raises(PolicyError) as caught:
        build_guards(settings.guards, GuardResources(RunnerPool(), None, Path("/tmp")))
    assert str(caught.value).startswith(key), str(caught.value)
