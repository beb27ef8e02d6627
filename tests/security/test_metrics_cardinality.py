"""Threat: anyone, with no key, grows the metrics without bound and stalls the server (issue 11, item 8).

The ``route`` label was the raw path: 12,442 requests to ``GET /v1/models/<random>`` added 448,056
series lines, and one 38.9 MB scrape blocked the event loop for 7-8 s. Labels come from route templates
and served models only, and a scrape renders off the event loop.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

import gateway.metrics
from gateway.app import create_app
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings
from tests.support.fake_upstream import FakeUpstream

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}]}


def _series(metrics_text: str, name: str) -> list[str]:
    return [line for line in metrics_text.splitlines() if line.startswith(name + "{")]


async def test_random_paths_with_and_without_a_key_add_no_metric_series(client: AsyncTestClient[Any]) -> None:
    await client.get("/v1/models/fake-model")
    before = (await client.get("/metrics")).text
    names = [f"probe-{uuid.uuid4().hex}" for _ in range(60)]
    for name in names[:40]:
        await client.get(f"/v1/models/{name}")
    for name in names[40:]:  # no key: refused, but the request is still counted
        assert (await client.get(f"/v1/models/{name}", headers={"authorization": ""})).status_code == 401
    after = (await client.get("/metrics")).text
    assert not any(name in after for name in names)
    assert 'route="/v1/models/{model_id}"' in after
    # New series only for the new statuses (404, 401), never one per path.
    assert len(_series(after, "hhh_requests_total")) - len(_series(before, "hhh_requests_total")) <= 3


async def test_unserved_model_names_never_become_label_values(client: AsyncTestClient[Any]) -> None:
    invented = f"invented-{uuid.uuid4().hex}"
    assert (await client.post("/v1/chat/completions", json={**CHAT, "model": invented})).status_code == 404
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    text = (await client.get("/metrics")).text
    assert invented not in text
    assert 'model="fake-model"' in text


def test_model_label_is_other_for_any_model_the_gateway_does_not_serve() -> None:
    metrics = GatewayMetrics()
    metrics.label_models_served_by(lambda model: model == "fake-model")
    assert metrics.model_label("fake-model") == "fake-model"
    assert metrics.model_label("x" * 200) == "other"
    assert metrics.model_label("") == ""


@asynccontextmanager
async def served_on_this_loop(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The app and its client on the test's own event loop (Litestar's test client runs the app in a
    thread of its own and one request at a time, so it cannot show one request stalling another)."""
    to_app: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.create_task(app(scope, to_app.get, from_app.put))  # type: ignore[arg-type]
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await from_app.get()
        await lifespan


async def test_a_slow_metrics_render_does_not_block_other_requests(
    settings: Settings, fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    render_started, release = threading.Event(), threading.Event()
    real = gateway.metrics.generate_latest

    def slow_render(registry: Any) -> bytes:
        render_started.set()
        release.wait(timeout=10)  # on the event loop, this would stall every request for 10 s
        return real(registry)

    monkeypatch.setattr(gateway.metrics, "generate_latest", slow_render)
    app = create_app(settings, upstream_transport=fake_upstream.transport(), guards={})
    async with served_on_this_loop(app) as client:
        scrape = asyncio.create_task(client.get("/metrics"))
        try:
            while not render_started.is_set() and not scrape.done():
                await asyncio.sleep(0.01)
            health = await client.get("/health")
            answered_during_scrape = not scrape.done()
        finally:
            release.set()
        assert health.status_code == 200
        assert answered_during_scrape
        assert (await scrape).status_code == 200
