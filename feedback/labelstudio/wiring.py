"""The sync and the lock that keeps it alone, put together from the settings in one place: the gateway's
background task and ``hhh feedback sync`` run the very same thing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio

from feedback.collector import EventCollector
from feedback.labelstudio.receiver import AnnotationReceiver
from feedback.labelstudio.settings import LabelStudioSettings
from feedback.labelstudio.sync import LabelStudioSync, Progress, SyncLock
from feedback.store import FeedbackStore

if TYPE_CHECKING:
    from feedback.labelstudio.client import LabelStudioProject

# The lock expires if its holder dies without releasing it. The holder refreshes it when a round starts
# and after each batch it pushes, so it must outlast the longest gap between refreshes: a poll interval of
# waiting plus a round slowed down by Label Studio's retries (minutes). At least this long, for a crashed
# sync's lock to free itself soon all the same...
MIN_LOCK_TTL_S = 300.0
# ...and at least this many poll intervals, so that a long interval leaves room for the round after it.
LOCK_TTL_POLL_INTERVALS = 4
SECONDS_A_DAY = 86_400


@dataclass(frozen=True)
class WiredSync:
    sync: LabelStudioSync
    lock: SyncLock  # the same lock the sync refreshes; its holder acquires and releases it


def lock_ttl_s(settings: LabelStudioSettings) -> float:
    return max(MIN_LOCK_TTL_S, LOCK_TTL_POLL_INTERVALS * settings.poll_interval_s)


def build_sync(
    settings: LabelStudioSettings,
    api: LabelStudioProject,
    client: redis.asyncio.Redis,
    stream: str,
    progress: Progress | None = None,
) -> WiredSync:
    """The sync over the events recorded in ``stream`` of the Redis at ``client``, and its lock."""
    store = FeedbackStore(client)
    lock = SyncLock(store, ttl_s=lock_ttl_s(settings))
    sync = LabelStudioSync(
        settings,
        api,
        store,
        EventCollector(client, store, stream, settings.settle_s),
        AnnotationReceiver(store, buckets=settings.buckets),
        progress=progress,
        lock=lock,
        retention_s=settings.retention_days * SECONDS_A_DAY,
    )
    return WiredSync(sync, lock)
