"""The Label Studio sync and its lock, built from the settings in one place for the gateway and the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import pytest

from feedback.labelstudio.settings import LabelStudioSettings
from feedback.labelstudio.sync import NoProgress
from feedback.labelstudio.wiring import MIN_LOCK_TTL_S, build_sync, lock_ttl_s
from feedback.redis_connection import redis_client

if TYPE_CHECKING:
    from feedback.labelstudio.client import LabelStudioProject

UNUSED_URL = "redis://127.0.0.1:1/0"  # nothing here connects


@pytest.mark.parametrize(("poll_interval_s", "ttl_s"), [(1.0, MIN_LOCK_TTL_S), (30.0, 300.0), (120.0, 480.0)])
def test_the_lock_outlasts_several_poll_intervals_and_never_less_than_the_minimum(
    poll_interval_s: float, ttl_s: float
) -> None:
    assert lock_ttl_s(LabelStudioSettings(poll_interval_s=poll_interval_s)) == ttl_s


async def test_the_sync_refreshes_the_lock_it_is_built_with_and_keeps_answers_for_the_retention() -> None:
    settings = LabelStudioSettings(poll_interval_s=120.0, retention_days=2.5, settle_s=7.0)
    client = redis_client(UNUSED_URL)
    api = cast("LabelStudioProject", object())
    progress = NoProgress()
    try:
        wired = build_sync(settings, api, client, "my:events", progress)
    finally:
        await client.aclose()
    sync = wired.sync
    assert sync.lock is wired.lock
    assert wired.lock.ttl_ms == 480_000
    assert wired.lock.store is sync.store is sync.collector.store is sync.receiver.store
    assert sync.retention_s == 2.5 * 86_400
    assert (sync.collector.stream, sync.collector.settle_s) == ("my:events", 7.0)
    assert (sync.api, sync.progress, sync.settings) == (api, progress, settings)
