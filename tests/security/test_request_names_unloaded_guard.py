"""Threat: a request's ``"guardrails"`` field names a guard the gateway has not loaded, and the server
answers 500 (a ``KeyError`` in the engine), which a client can trigger at will.

Only guards that some policy runs are loaded. Naming any other guard, configured or not, or a guard at a
stage it does not judge, is the client's error: a 400 that names the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from guards.policy import Policy, PolicyBook, Rule
from guards.verdict import JudgeContext, Stage, Verdict
from tests.support.fake_guards import EmailGuard, WordGuard
from tests.support.policy_harness import chat, guarded_client

BOOK = PolicyBook(default=Policy(input=[Rule(guard="toxicity")], output=[Rule(guard="toxicity")]))


class OutputOnlyGuard:
    """Judges answers only (like the grounding guard); passes everything."""

    kind: ClassVar[str] = "fake-output-only"
    stages: ClassVar[frozenset[Stage]] = frozenset({Stage.OUTPUT})
    config_type: ClassVar[type[msgspec.Struct]] = msgspec.Struct
    default_thresholds: ClassVar[Mapping[str, float]] = {"unsupported": 0.5}
    name = "grounding"
    categories: Sequence[str] = ["unsupported"]

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        return [Verdict(self.name, True) for _ in texts]


async def _ask(guardrails: dict[str, Any], book: PolicyBook = BOOK) -> Any:
    guards = {"toxicity": WordGuard(), "pii": EmailGuard(), "grounding": OutputOnlyGuard()}
    async with guarded_client(book, guards) as client:
        return await client.post("/v1/chat/completions", json=chat("hello", guardrails=guardrails))


async def test_naming_a_configured_guard_that_no_policy_uses_is_a_400_not_a_500() -> None:
    for stage in ("input", "output"):
        response = await _ask({stage: [{"guard": "pii", "action": "redact"}]})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == f"guardrails.{stage}[0].guard"
        assert "'pii'" in error["message"]
        assert "usable: toxicity" in error["message"]
    unknown = await _ask({"input": [{"guard": "no-such-guard"}]})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "guardrails.input[0].guard"


async def test_naming_a_guard_at_a_stage_it_does_not_judge_is_a_400() -> None:
    book = PolicyBook(default=Policy(output=[Rule(guard="grounding")]))
    response = await _ask({"input": [{"guard": "grounding"}]}, book)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "guardrails.input[0].guard"
    assert "does not judge input" in error["message"]
