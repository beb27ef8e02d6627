"""Threat: upstream credentials written in a URL (``http://user:pass@host``) leak, or break readiness
(issue 11, item 19).

``hhh config check`` and the start-up log showed them, and /ready answered 500: the pooled client passed
the URL's credentials on beside an Authorization header, which aiohttp refuses with a ValueError.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import httpx
import msgspec
import pytest
import yaml
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.cli.main import main
from gateway.settings import ConfigError, Settings, UpstreamSettings, settings_from_mapping
from tests.support.fake_upstream import FakeUpstream
from tests.support.ops_servers import recording_upstream
from tests.unit.conftest import GATEWAY_KEY

SECRET = "s3cret-pw"
REDIS_SECRET = "redis-pw"


def test_config_check_masks_url_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = {
        "guards": {},
        "policies": {"default": {}},
        "upstreams": [{"name": "llm", "url": f"http://alice:{SECRET}@llm.internal:8000/v1"}],
        "redis": {"url": f"redis://:{REDIS_SECRET}@cache.internal:6379/0"},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["config", "check", "--config", str(path)]) == 0
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert SECRET not in shown
    assert "alice" not in shown
    assert REDIS_SECRET not in shown
    assert "http://***@llm.internal:8000/v1" in shown


async def test_start_up_log_masks_url_credentials(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    upstreams = [
        UpstreamSettings(name="fake", url=f"http://alice:{SECRET}@fake.test/v1"),
        # Discovery fails here: the warning quotes the exception, which quotes the URL.
        UpstreamSettings(name="refusing", url=f"http://bob:{SECRET}@refusing.test/v1"),
    ]
    fake = FakeUpstream()

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "refusing.test":
            return httpx.Response(401, json={"error": {"message": "no"}})
        return await fake.handle(request)

    app = create_app(
        msgspec.structs.replace(settings, upstreams=upstreams),
        upstream_transport=httpx.MockTransport(handle),
        guards={},
    )
    with caplog.at_level(logging.INFO):
        async with AsyncTestClient(app) as client:
            assert (await client.get("/health")).status_code == 200
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "fake.test" in logged  # the upstreams are listed...
    assert SECRET not in logged  # ...without their credentials
    assert "alice" not in logged


async def test_ready_with_url_credentials_answers_and_sends_them_as_basic_auth(settings: Settings) -> None:
    with recording_upstream(["m"]) as (port, upstream):
        url = f"http://alice:{SECRET}@127.0.0.1:{port}/v1"
        real = msgspec.structs.replace(settings, upstreams=[UpstreamSettings(name="llm", url=url)])
        async with AsyncTestClient(create_app(real, guards={})) as client:  # the real pooled client
            ready = await client.get("/ready")
            models = await client.get("/v1/models", headers={"authorization": f"Bearer {GATEWAY_KEY}"})
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "upstreams": {"llm": "ok"}}
    assert [card["id"] for card in models.json()["data"]] == ["m"]
    expected = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert upstream.authorizations
    assert set(upstream.authorizations) == {expected}


def test_url_credentials_and_an_api_key_together_are_a_config_error_naming_the_key() -> None:
    raw = {"upstreams": [{"name": "llm", "url": f"http://alice:{SECRET}@llm:8000/v1", "api_key": "sk-x"}]}
    with pytest.raises(ConfigError, match=r"upstreams\[0\]\.url") as error:
        settings_from_mapping(raw, environ={})
    assert SECRET not in str(error.value)
