"""Threat: one request multiplied into hundreds of upstream calls through ``n``.

An upstream that ignores ``n`` (llama.cpp, the embedded default) is asked n times concurrently: ``n=300``
made 300 upstream calls. ``n`` now has a configurable cap, refused with a 400 naming ``n`` before any
upstream call."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.limits import LimitsSettings
from gateway.settings import Settings
from tests.support.fake_upstream import FakeUpstream
from tests.unit.conftest import GATEWAY_KEY


def _body(path: str, n: int, stream: bool) -> dict[str, Any]:
    if path == "/v1/completions":
        return {"model": "llama-like", "prompt": "Say hi.", "n": n, "stream": stream}
    return {
        "model": "llama-like",
        "messages": [{"role": "user", "content": "Say hi."}],
        "n": n,
        "stream": stream,
    }


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_n_of_300_is_refused_before_a_single_upstream_call(
    client: AsyncTestClient,
    fake_upstream: FakeUpstream,
    path: str,
    stream: bool,  # type: ignore[type-arg]
) -> None:
    response = await client.post(path, json=_body(path, 300, stream))
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "n")
    assert "limits.max_n" in error["message"]
    assert fake_upstream.bodies == []


async def test_the_cap_on_n_is_configurable_and_n_up_to_it_still_fans_out(settings: Settings) -> None:
    upstream = FakeUpstream()
    settings = msgspec.structs.replace(settings, limits=LimitsSettings(max_n=3))
    async with AsyncTestClient(
        create_app(settings, upstream_transport=upstream.transport(), guards={})
    ) as client:
        client.headers["authorization"] = f"Bearer {GATEWAY_KEY}"
        allowed = await client.post("/v1/chat/completions", json=_body("/v1/chat/completions", 3, False))
        assert allowed.status_code == 200
        assert len(allowed.json()["choices"]) == 3
        assert len(upstream.bodies) == 3  # asked three times: the upstream ignores n
        refused = await client.post("/v1/chat/completions", json=_body("/v1/chat/completions", 4, False))
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "n"
    assert len(upstream.bodies) == 3
