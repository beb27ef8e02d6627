"""The lifespan's services: opened in startup order, closed in reverse, handed out as one typed value."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from gateway import services
from gateway.app import create_app
from gateway.auth import KeyRing
from gateway.metrics import GatewayMetrics
from gateway.rate_limit.middleware import RateLimits
from gateway.relay.upstream import UpstreamPool
from gateway.server.dependencies import provide_completions, provide_proxy, provide_recorder
from gateway.services import Groundwork, Services, announce, open_guards, open_sampler
from gateway.settings import (
    AuthSettings,
    FeedbackSettings,
    SamplingSettings,
    Settings,
    UpstreamSettings,
)
from guards.pipeline import GuardEngine
from guards.policy import Policy, PolicyBook
from guards.runner import RunnerPool
from tests.support.fake_upstream import FakeUpstream


def _settings(**overrides: Any) -> Settings:
    return Settings(
        feedback=FeedbackSettings(record=False),
        guards={},
        policies=PolicyBook(default=Policy()),
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1", models=["m"])],
        **overrides,
    )


def _recording(
    steps: list[str], name: str, value: Any = None
) -> Callable[..., AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def fake(*_: Any) -> AsyncIterator[Any]:
        steps.append(f"open {name}")
        try:
            yield value
        finally:
            steps.append(f"close {name}")

    return fake


class _Drain:
    def __init__(self, steps: list[str]) -> None:
        self.steps = steps

    async def settle(self) -> None:
        self.steps.append("settle streams")


async def test_services_open_in_startup_order_and_close_in_reverse(monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[str] = []
    for name in ("upstreams", "guards", "recorder", "rate_limits", "sampler", "sync"):
        monkeypatch.setattr(services, f"open_{name}", _recording(steps, name))

    async def discover(*_: Any) -> None:
        steps.append("discover models")

    monkeypatch.setattr(services, "discover_models", discover)
    monkeypatch.setattr(services, "announce", lambda *_: steps.append("announce"))
    settings, metrics = _settings(), GatewayMetrics()
    ground = Groundwork(
        settings=settings,
        data_dir=Path("unused"),
        upstream_transport=None,
        metrics=metrics,
        keyring=KeyRing(settings.auth),
        runners=RunnerPool(),
        engine=GuardEngine({}),
        rate_limits=RateLimits(settings, metrics.registry),
        drain=_Drain(steps),  # type: ignore[arg-type]
    )

    async with services.open_services(ground) as opened:
        assert steps == [
            "open upstreams",
            "open guards",
            "open recorder",
            "open rate_limits",
            "discover models",
            "open sampler",
            "open sync",
            "announce",
        ]
        assert opened.completions.proxy is opened.proxy
        steps.clear()

    # Streams end before the writers they record to; the sampler before the recorder it writes to.
    assert steps == [
        "close sync",
        "close sampler",
        "settle streams",
        "close rate_limits",
        "close recorder",
        "close guards",
        "close upstreams",
    ]


async def test_guards_close_even_when_the_engine_fails_to_start() -> None:
    steps: list[str] = []

    class Engine:
        async def start(self) -> None:
            raise RuntimeError("model missing")

        async def close(self) -> None:
            steps.append("engine")

    class Runners:
        async def close(self) -> None:
            steps.append("runners")

    with pytest.raises(RuntimeError, match="model missing"):
        async with open_guards(Engine(), Runners()):  # type: ignore[arg-type]
            pass
    assert steps == ["engine", "runners"]


async def test_no_sampler_without_a_recorder() -> None:
    feedback = FeedbackSettings(sampling=SamplingSettings(fraction=1.0))
    async with open_sampler(object(), None, feedback) as sampler:  # type: ignore[arg-type]
        assert sampler is None


async def test_the_app_keeps_one_services_value_that_the_dependencies_hand_out() -> None:
    app = create_app(_settings(), upstream_transport=FakeUpstream().transport(), guards={})
    async with AsyncTestClient(app):
        opened = app.state.services
        assert isinstance(opened, Services)
        assert provide_proxy(app.state) is opened.proxy
        assert provide_completions(app.state) is opened.completions
        assert provide_recorder(app.state) is None  # feedback.record is off
        assert opened.labelstudio_webhook is None


async def test_announce_warns_of_an_open_gateway_and_masks_upstream_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = UpstreamSettings(name="llm", url="http://user:secret@llm.test/v1", models=["m"])
    async with httpx.AsyncClient() as client:
        pool = UpstreamPool([upstream], client, GatewayMetrics())
    with caplog.at_level(logging.INFO, logger="hhh.app"):
        announce(KeyRing(AuthSettings()), pool)
    assert "NO API KEYS CONFIGURED" in caplog.text
    assert "upstreams: llm → " in caplog.text
    assert "secret" not in caplog.text
