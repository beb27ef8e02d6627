"""Threat: the unauthenticated operator endpoints (issue 11, item 25).

/metrics told anyone the models, routes and traffic of the gateway, with no way to close it; /ready made
the gateway probe every upstream on every call, so anyone could multiply its load on them. /metrics can
now require a token or a gateway key, and /ready answers from a probe at most a few seconds old.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.cli.main import main
from gateway.settings import ConfigError, ServerSettings, Settings, settings_from_mapping
from tests.support.fake_upstream import FakeUpstream
from tests.unit.conftest import GATEWAY_KEY

SCRAPER_TOKEN = "scrape-me-4f1c"


def _with_operations(settings: Settings, **operations: Any) -> Settings:
    raw = {**msgspec.to_builtins(settings.server), "operations": operations}
    server = msgspec.convert(raw, ServerSettings)
    return msgspec.structs.replace(settings, server=server)


@asynccontextmanager
async def serving(settings: Settings, fake: FakeUpstream) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app over the fake upstream, and a client that sends no key unless told to."""
    app = create_app(settings, upstream_transport=fake.transport(), guards={})
    async with AsyncTestClient(app) as client:
        yield client


async def test_health_and_ready_answer_without_a_key(settings: Settings) -> None:
    async with serving(settings, FakeUpstream()) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/ready")).status_code == 200


async def test_metrics_with_a_scraper_token_refuse_anyone_without_it(settings: Settings) -> None:
    async with serving(
        _with_operations(settings, metrics_auth="token", metrics_token=SCRAPER_TOKEN), FakeUpstream()
    ) as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert (await client.get("/metrics", headers={"authorization": "Bearer wrong"})).status_code == 401
        assert (
            await client.get("/metrics", headers={"authorization": f"Bearer {GATEWAY_KEY}"})
        ).status_code == 401
        allowed = await client.get("/metrics", headers={"authorization": f"Bearer {SCRAPER_TOKEN}"})
        assert allowed.status_code == 200
        assert "hhh_requests_total" in allowed.text
        assert (await client.get("/health")).status_code == 200  # probes stay open


async def test_metrics_can_require_a_gateway_key(settings: Settings) -> None:
    async with serving(_with_operations(settings, metrics_auth="gateway_key"), FakeUpstream()) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"authorization": "Bearer nope"})).status_code == 401
        allowed = await client.get("/metrics", headers={"authorization": f"Bearer {GATEWAY_KEY}"})
        assert allowed.status_code == 200


def test_a_token_mode_without_a_token_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"server\.operations\.metrics_token"):
        settings_from_mapping({"server": {"operations": {"metrics_auth": "token"}}}, environ={})


def test_config_check_does_not_show_the_metrics_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "guards": {},
        "policies": {"default": {}},
        "server": {"operations": {"metrics_auth": "token", "metrics_token": SCRAPER_TOKEN}},
    }
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    assert main(["config", "check", "--config", str(tmp_path / "gateway.yaml")]) == 0
    captured = capsys.readouterr()
    assert SCRAPER_TOKEN not in captured.out + captured.err
    assert '"metrics_token": "***"' in captured.out


def _probes(fake: FakeUpstream) -> int:
    return sum(1 for r in fake.requests if r.method == "GET" and r.url.path.endswith("/models"))


async def test_ready_floods_probe_the_upstreams_once_per_cache_period(settings: Settings) -> None:
    fake = FakeUpstream()
    async with serving(_with_operations(settings, ready_cache_s=60.0), fake) as client:
        at_start = _probes(fake)  # model discovery at start-up
        for _ in range(20):
            response = await client.get("/ready")
            assert response.json()["upstreams"] == {"fake": "ok", "second": "ok", "llamalike": "ok"}
        assert _probes(fake) - at_start == 3  # one probe of each of the 3 upstreams, for 20 calls


async def test_ready_cache_of_zero_probes_on_every_call(settings: Settings) -> None:
    fake = FakeUpstream()
    async with serving(_with_operations(settings, ready_cache_s=0.0), fake) as client:
        at_start = _probes(fake)
        for _ in range(2):
            await client.get("/ready")
        assert _probes(fake) - at_start == 6
