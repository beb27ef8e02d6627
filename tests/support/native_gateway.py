"""A gateway with two upstreams: ``native`` (marked ``supports_responses``: the scripted Responses upstream)
and ``fake`` (chat only: its ``echo`` and ``tool-echo`` models), so each Responses test can run on both
paths, the native relay and the translation, with ``WordGuard`` as toxicity and ``EmailGuard`` as PII."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.settings import FeedbackSettings, Settings, UpstreamSettings
from guards.policy import PolicyBook
from tests.support.fake_guards import EmailGuard, WordGuard
from tests.support.fake_upstream import FakeUpstream
from tests.support.memory_redis import memory_owners
from tests.support.responses_upstream import NATIVE_MODELS, ResponsesScript, native_transport
from tests.support.revise_gateway import GUARDS, Recorder


class NativeGateway:
    def __init__(self, client: AsyncTestClient[Any], script: ResponsesScript, chat: FakeUpstream) -> None:
        self.client = client
        self.script = script
        self.chat = chat
        self.recorder = Recorder()

    async def respond(self, model: str, **body: Any) -> Any:
        return await self.client.post("/v1/responses", json={"model": model, **body})

    def received(self, model: str) -> dict[str, Any]:
        """The last body the upstream of ``model`` received (Responses natively, chat translated)."""
        bodies = self.script.bodies if model in NATIVE_MODELS else self.chat.bodies
        return bodies[-1]

    def nothing_received(self) -> bool:
        return not self.script.bodies and not self.chat.bodies


@asynccontextmanager
async def native_gateway(policies: PolicyBook) -> AsyncIterator[NativeGateway]:
    script, chat = ResponsesScript(), FakeUpstream()
    settings = Settings(
        feedback=FeedbackSettings(record=False),
        upstreams=[
            UpstreamSettings(
                name="native", url="http://native.test/v1", models=NATIVE_MODELS, supports_responses=True
            ),
            UpstreamSettings(name="fake", url="http://fake.test/v1", models=["echo", "tool-echo"]),
        ],
        guards=GUARDS,
        policies=policies,
    )
    owners, _ = memory_owners()
    app = create_app(
        settings,
        upstream_transport=native_transport(script, chat),
        guards={"toxicity": WordGuard(), "pii": EmailGuard()},
        response_owners=owners,
    )
    async with AsyncTestClient(app) as client:
        gw = NativeGateway(client, script, chat)
        completions = app.state.services.completions
        completions.recorder = gw.recorder
        yield gw
