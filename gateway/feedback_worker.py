"""The Label Studio sync as a background task of the gateway (``feedback.labelstudio.run_in_gateway``),
for a one-process set-up; ``hhh feedback sync --watch`` runs the same rounds in a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

from prometheus_client import CollectorRegistry

from feedback.labelstudio.errors import LabelStudioRefused, LabelStudioUnavailable
from feedback.labelstudio.metrics import SyncMetrics
from feedback.labelstudio.settings import LabelStudioSettings
from feedback.labelstudio.sync import SyncBusy
from feedback.labelstudio.wiring import build_sync
from feedback.recorder import EventRecorder

log = logging.getLogger("hhh.labelstudio")


async def start_sync_worker(
    settings: LabelStudioSettings,
    stream: str,
    recorder: EventRecorder,
    registry: CollectorRegistry,
    stack: AsyncExitStack,
) -> None:
    """Starts the rounds; they stop with the gateway. Label Studio being away only delays them."""
    from feedback.labelstudio.client import LabelStudioProject  # the SDK: only when configured

    api = await stack.enter_async_context(LabelStudioProject(settings))
    wired = build_sync(settings, api, recorder.client, stream)
    sync, lock = wired.sync, wired.lock
    metrics = SyncMetrics(registry)
    stop = asyncio.Event()

    async def run() -> None:
        try:
            await lock.acquire()
        except SyncBusy as exc:
            log.warning("not syncing from the gateway: %s", exc)
            return
        try:
            while not stop.is_set():
                try:
                    await sync.bootstrap()
                    break
                except LabelStudioUnavailable as exc:
                    log.warning("Label Studio unavailable (%s); the sync will try again", exc)
                    metrics.rounds_failed.inc()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), settings.poll_interval_s)
            await sync.watch(stop, on_round=metrics.observe, on_failure=metrics.rounds_failed.inc)
        except (LabelStudioRefused, SyncBusy) as exc:
            log.error("Label Studio sync stopped: %s", exc)
        except Exception:
            log.exception("Label Studio sync stopped by an unexpected error")
        finally:
            with contextlib.suppress(Exception):
                await lock.release()

    task = asyncio.create_task(run(), name="labelstudio-sync")

    async def finish() -> None:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)

    stack.push_async_callback(finish)
    log.info("syncing with Label Studio at %s every %.0f s", settings.url, settings.poll_interval_s)
