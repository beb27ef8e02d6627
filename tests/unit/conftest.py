from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.settings import (
    ApiKey,
    AuthSettings,
    FeedbackSettings,
    ServerSettings,
    Settings,
    UpstreamSettings,
)
from guards.policy import Policy, PolicyBook
from tests.support.fake_upstream import FakeUpstream

GATEWAY_KEY = "hhh-test-key"
UPSTREAM_SECRET = "sk-upstream-secret"


@pytest.fixture
def fake_upstream() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
def settings() -> Settings:
    """The proxy with no guards: the guard paths have their own fixtures (test_guarded_*)."""
    return Settings(
        feedback=FeedbackSettings(record=False),  # recording has its own tests
        guards={},
        policies=PolicyBook(default=Policy()),
        server=ServerSettings(max_body_bytes=64 * 1024),
        upstreams=[
            UpstreamSettings(name="fake", url="http://fake.test/v1", api_key=UPSTREAM_SECRET),
            UpstreamSettings(name="second", url="http://second.test/v1", models=["second-model"]),
            # Declared like llama.cpp's server: it ignores n and stream_options.include_usage.
            UpstreamSettings(
                name="llamalike",
                url="http://llamalike.test/v1",
                models=["llama-like"],
                supports_n=False,
                supports_stream_usage=False,
            ),
        ],
        auth=AuthSettings(keys=[ApiKey(tenant="acme", sha256=hash_key(GATEWAY_KEY))]),
    )


@pytest.fixture
async def client(settings: Settings, fake_upstream: FakeUpstream) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    app = create_app(settings, upstream_transport=fake_upstream.transport(), guards={})
    async with AsyncTestClient(app) as test_client:
        test_client.headers["authorization"] = f"Bearer {GATEWAY_KEY}"
        yield test_client
