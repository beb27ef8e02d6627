"""Threat: a client gets its low-reward answers past the operator's floor through the request's own
``"guardrails"`` field.

A reward guard's threshold is a floor (below it, an answer is flagged), where every other threshold is a
ceiling: the tightening rule "a lower threshold is stricter" would have let a request lower the floor,
and a request adding the guard would have made a ``block`` rule that fails closed. Requests may raise a
floor, never lower it, and grading guards only flag or annotate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.settings import settings_from_mapping
from guards.policy import (
    Action,
    FailMode,
    Grade,
    Policy,
    PolicyError,
    RequestGuardrails,
    RequestRule,
    Rule,
    tighten,
)
from guards.verdict import Stage
from tests.support.fake_upstream import FakeUpstream
from tests.support.reward_models import build_reward_model

GUARDS = {"reward": frozenset({Stage.OUTPUT}), "toxicity": frozenset(Stage)}
CATEGORIES = {"reward": (Grade("reward"),), "toxicity": ("toxicity",)}
FLOOR = Rule(guard="reward", action=Action.FLAG, thresholds={"reward": -1.0}, on_error=FailMode.OPEN)
KEY = "hhh-floor-key"


def _tighten(policy: Policy, *asks: RequestRule) -> Policy:
    return tighten(
        policy, RequestGuardrails(output=list(asks)), GUARDS, {"toxicity": {"toxicity": 0.5}}, CATEGORIES
    )


def test_a_request_cannot_lower_the_floor() -> None:
    with pytest.raises(
        PolicyError, match=r"^guardrails\.output\[0\]\.thresholds\.reward: cannot lower the floor"
    ):
        _tighten(Policy(output=[FLOOR]), RequestRule(guard="reward", thresholds={"reward": -50.0}))


def test_a_request_may_raise_the_floor() -> None:
    (rule,) = _tighten(Policy(output=[FLOOR]), RequestRule(guard="reward", thresholds={"reward": 2.0})).output
    assert rule.thresholds == {"reward": 2.0}


def test_of_two_floors_a_request_can_only_raise_each_never_drop_either() -> None:
    strict = Rule(guard="reward", action=Action.ANNOTATE, thresholds={"reward": 1.0}, on_error=FailMode.OPEN)
    with pytest.raises(PolicyError, match=r"cannot lower the floor -1\.0"):
        _tighten(Policy(output=[FLOOR, strict]), RequestRule(guard="reward", thresholds={"reward": -2.0}))
    tightened = _tighten(
        Policy(output=[FLOOR, strict]), RequestRule(guard="reward", thresholds={"reward": 0.0})
    )
    assert [r.thresholds["reward"] for r in tightened.output] == [0.0, 1.0]  # each the stricter of the two


@pytest.mark.parametrize("value", [float("nan"), float("-inf"), float("inf")])
def test_a_floor_that_is_not_a_number_is_refused(value: float) -> None:
    with pytest.raises(PolicyError, match=r"thresholds\.reward: must be a finite number"):
        _tighten(Policy(output=[FLOOR]), RequestRule(guard="reward", thresholds={"reward": value}))


@pytest.mark.parametrize("action", [Action.BLOCK, Action.REDACT, Action.TRUNCATE])
def test_a_request_cannot_make_a_grading_rule_withhold_answers(action: Action) -> None:
    with pytest.raises(PolicyError, match=r"^guardrails\.output\[0\]\.action: guard 'reward' grades answers"):
        _tighten(Policy(output=[FLOOR]), RequestRule(guard="reward", action=action))


def test_a_request_adding_the_reward_guard_gets_a_rule_that_flags_and_fails_open() -> None:
    (added,) = _tighten(Policy(), RequestRule(guard="reward", thresholds={"reward": 0.5})).output
    assert (added.action, added.on_error, added.thresholds) == (Action.FLAG, FailMode.OPEN, {"reward": 0.5})


def test_harm_thresholds_keep_their_direction_beside_a_floor() -> None:
    toxicity = Rule(guard="toxicity", thresholds={"toxicity": 0.5})
    with pytest.raises(PolicyError, match=r"cannot raise 0\.5 to 0\.9"):
        _tighten(
            Policy(output=[toxicity, FLOOR]), RequestRule(guard="toxicity", thresholds={"toxicity": 0.9})
        )


# --- through the gateway ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_reward_model(tmp_path_factory.mktemp("floor") / "bert", "bert")


@pytest.fixture
async def client(model_dir: Path) -> AsyncIterator[AsyncTestClient[Any]]:
    raw = {
        "feedback": {"record": False},
        "auth": {"keys": [{"tenant": "t", "sha256": hash_key(KEY)}]},
        "upstreams": [{"name": "fake", "url": "http://fake.test/v1"}],
        "guards": {"reward": {"type": "reward", "config": {"model": str(model_dir), "precision": "fp32"}}},
        "policies": {"default": {"output": [
            {"guard": "reward", "action": "flag", "on_error": "open", "thresholds": {"reward": 100.0}}]}},
    }  # fmt: skip
    app = create_app(settings_from_mapping(raw, environ={}), upstream_transport=FakeUpstream().transport())
    async with AsyncTestClient(app) as test_client:
        test_client.headers["authorization"] = f"Bearer {KEY}"
        yield test_client


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": "Go away."}], **extra}


async def test_the_floor_flags_and_a_request_lowering_it_gets_a_400_naming_the_param(
    client: AsyncTestClient[Any],
) -> None:
    plain = await client.post("/v1/chat/completions", json=_chat())
    assert plain.json()["guardrails"]["output"][0]["decision"] == "flag"  # every reward is below 100
    lowered = await client.post(
        "/v1/chat/completions",
        json=_chat(guardrails={"output": [{"guard": "reward", "thresholds": {"reward": -1000.0}}]}),
    )
    assert lowered.status_code == 400
    error = lowered.json()["error"]
    assert error["param"] == "guardrails.output[0].thresholds.reward"
    assert "cannot lower the floor" in error["message"]
    blocking = await client.post(
        "/v1/chat/completions", json=_chat(guardrails={"output": [{"guard": "reward", "action": "block"}]})
    )
    assert blocking.status_code == 400
    assert blocking.json()["error"]["param"] == "guardrails.output[0].action"
    on_input = await client.post(
        "/v1/chat/completions", json=_chat(guardrails={"input": [{"guard": "reward"}]})
    )
    assert on_input.status_code == 400
    assert on_input.json()["error"]["param"] == "guardrails.input[0].guard"
