"""What start-up loaded is frozen out of the garbage collector's reach while the gateway serves, and
given back at shutdown; each collection's pause is a metric."""

from __future__ import annotations

import gc

from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.support.fake_upstream import FakeUpstream


async def test_the_startup_heap_is_frozen_while_serving_and_unfrozen_after(settings: Settings) -> None:
    gc.unfreeze()
    app = create_app(settings, upstream_transport=FakeUpstream().transport(), guards={})
    async with AsyncTestClient(app) as client:
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the app, its settings and every module's objects
        assert (await client.get("/health")).status_code == 200
    assert gc.get_freeze_count() == 0  # a process that starts another gateway does not keep this one


async def test_collection_pauses_are_measured(settings: Settings) -> None:
    app = create_app(settings, upstream_transport=FakeUpstream().transport(), guards={})
    async with AsyncTestClient(app) as client:
        gc.collect()
        metrics = (await client.get("/metrics")).text
    counts = [line for line in metrics.splitlines() if line.startswith("hhh_gc_pause_seconds_count")]
    assert any('generation="2"' in line and not line.endswith(" 0.0") for line in counts), counts
    assert all(getattr(c, "__name__", "") != "on_collection" for c in gc.callbacks)  # removed at shutdown
