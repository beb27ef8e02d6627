"""A gateway whose output rules revise, over the fake upstream and its scripted critics, recording into
memory: shared by the unit tests of the ``revise`` action and the attacks on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.settings import FeedbackSettings, Settings, UpstreamSettings
from guards.policy import Action, GuardSpec, Policy, PolicyBook, Revision, Rule, StreamPolicy
from tests.support.fake_guards import EmailGuard, WordGuard
from tests.support.fake_upstream import FakeUpstream

GUARDS = {"toxicity": GuardSpec(type="toxicity"), "pii": GuardSpec(type="pii")}


def revise(**settings: Any) -> Rule:
    return Rule(
        guard="toxicity", action=Action.REVISE, revision=Revision(**{"critic_model": "critic", **settings})
    )


def book(*output: Rule, stream: StreamPolicy | None = None, input: list[Rule] | None = None) -> PolicyBook:
    # The "echo" model answers with the user's message: no toxicity on input, so the answer is judged.
    return PolicyBook(default=Policy(input=input or [], output=list(output), stream=stream or StreamPolicy()))


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def record(self, event: Any) -> None:
        self.events.append(event)


class Gateway:
    def __init__(
        self, client: AsyncTestClient[Any], upstream: FakeUpstream, recorder: Recorder, services: Any
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.recorder = recorder
        self.app_services = services

    async def chat(self, content: str, **extra: Any) -> Any:
        body = {"model": "echo", "messages": [{"role": "user", "content": content}], **extra}
        return await self.client.post("/v1/chat/completions", json=body)

    def critic_bodies(self) -> list[dict[str, Any]]:
        return [body for body in self.upstream.bodies if body["model"] != "echo"]


@asynccontextmanager
async def gateway(policies: PolicyBook) -> AsyncIterator[Gateway]:
    """A gateway over the fake upstream (its critics too) with ``WordGuard`` as toxicity and ``EmailGuard``
    as PII, recording into ``Gateway.recorder``."""
    upstream, recorder = FakeUpstream(), Recorder()
    settings = Settings(
        feedback=FeedbackSettings(record=False),
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
        guards=GUARDS,
        policies=policies,
    )
    app = create_app(
        settings,
        upstream_transport=upstream.transport(),
        guards={"toxicity": WordGuard(), "pii": EmailGuard()},
    )
    async with AsyncTestClient(app) as client:
        services = app.state.services  # the recorder seam: every event the gateway records, in memory
        services.completions.recorder = services.completions.reviser.recorder = recorder
        yield Gateway(client, upstream, recorder, services)


def choice_report(response: Any, index: int = 0) -> dict[str, Any]:
    report: dict[str, Any] = response.json()["guardrails"]["output"][index]
    return report
