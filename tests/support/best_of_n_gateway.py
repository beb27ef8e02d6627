"""A gateway whose policy asks for best-of-n, over the fake upstream's scripted models, with
``PolitenessScorer`` as its reward model and ``WordGuard`` (BADWORD) as toxicity, recording into memory:
shared by the unit tests of best-of-n and the attacks on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from feedback.events import CompletionEvent
from gateway.app import create_app
from gateway.limits import LimitsSettings
from gateway.settings import FeedbackSettings, Settings, UpstreamSettings
from guards.policy import Action, BestOfN, Policy, PolicyBook, Rule
from tests.support.fake_guards import EmailGuard, WordGuard
from tests.support.fake_reward import PolitenessScorer
from tests.support.fake_upstream import FakeUpstream
from tests.support.revise_gateway import GUARDS, Recorder

REWARD_MODEL = "politeness-rm"


def best_of(n: int = 4, **settings: Any) -> BestOfN:
    return BestOfN(n=n, reward_model=REWARD_MODEL, **settings)


def policy(best: BestOfN | None = None, *output: Rule) -> PolicyBook:
    rules = list(output) or [Rule(guard="toxicity", action=Action.BLOCK)]
    return PolicyBook(default=Policy(output=rules, best_of_n=best or best_of()))


class Gateway:
    def __init__(
        self,
        client: AsyncTestClient[Any],
        upstream: FakeUpstream,
        recorder: Recorder,
        scorer: PolitenessScorer,
        toxicity: WordGuard,
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.recorder = recorder
        self.scorer = scorer
        self.toxicity = toxicity

    async def chat(self, content: str = "Can you help me?", model: str = "scripted", **extra: Any) -> Any:
        body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
        return await self.client.post("/v1/chat/completions", json=body)

    def events(self) -> tuple[CompletionEvent, list[CompletionEvent]]:
        """The original event and its candidates, as recorded."""
        completions = [e for e in self.recorder.events if isinstance(e, CompletionEvent)]
        (original,) = [e for e in completions if e.candidate_of is None]
        return original, [e for e in completions if e.candidate_of == original.id]


@asynccontextmanager
async def gateway(
    policies: PolicyBook, limits: LimitsSettings | None = None, script: list[str] | None = None
) -> AsyncIterator[Gateway]:
    """Upstream "fake" serves every model and supports ``n``; "no-n" serves ``scripted-no-n`` and
    ``scripted-flaky`` and, like llama.cpp, does not."""
    upstream, recorder, scorer, toxicity = FakeUpstream(), Recorder(), PolitenessScorer(), WordGuard()
    if script is not None:
        upstream.script = script
    settings = Settings(
        feedback=FeedbackSettings(record=False),
        upstreams=[
            UpstreamSettings(
                name="no-n",
                url="http://no-n.test/v1",
                models=["scripted-no-n", "scripted-flaky"],
                supports_n=False,
            ),
            UpstreamSettings(name="fake", url="http://fake.test/v1"),
        ],
        guards=GUARDS,
        policies=policies,
        limits=limits or LimitsSettings(),
    )
    app = create_app(
        settings,
        upstream_transport=upstream.transport(),
        guards={"toxicity": toxicity, "pii": EmailGuard()},
        reward_scorers={REWARD_MODEL: scorer},
    )
    async with AsyncTestClient(app) as client:
        services = app.state.services  # the recorder seam: every event the gateway records, in memory
        services.completions.recorder = services.completions.reviser.recorder = recorder
        yield Gateway(client, upstream, recorder, scorer, toxicity)


def report_of(response: Any, index: int = 0) -> dict[str, Any]:
    report: dict[str, Any] = response.json()["guardrails"]["output"][index]
    return report


def contents(response: Any) -> list[str | None]:
    return [choice["message"].get("content") for choice in response.json()["choices"]]


def decoded(events: list[Any]) -> list[Any]:
    """Events as they are stored (encoded and decoded again)."""
    return [msgspec.json.decode(msgspec.json.encode(e), type=CompletionEvent) for e in events]
