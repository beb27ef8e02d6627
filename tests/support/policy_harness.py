"""A gateway over the fake upstream with guards and policies of the test's choosing: the attacks on how a
policy is applied (tightening, normalisation) need their own policies, and sometimes their own guards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.settings import FeedbackSettings, Settings, UpstreamSettings
from guards.policy import GuardSpec, PolicyBook
from guards.protocol import Guard
from tests.support.fake_upstream import FakeUpstream


@asynccontextmanager
async def guarded_client(
    book: PolicyBook, guards: Mapping[str, Guard], upstream: FakeUpstream | None = None
) -> AsyncIterator[AsyncTestClient[Any]]:
    """A client of a gateway that runs ``guards`` (each configured under its name) with ``book``."""
    upstream = upstream or FakeUpstream()
    settings = Settings(
        feedback=FeedbackSettings(record=False),
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
        guards={name: GuardSpec(type=guard.kind) for name, guard in guards.items()},
        policies=book,
    )
    app = create_app(settings, upstream_transport=upstream.transport(), guards=dict(guards))
    async with AsyncTestClient(app) as client:
        yield client


def chat(content: str, model: str = "fake-model", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}
