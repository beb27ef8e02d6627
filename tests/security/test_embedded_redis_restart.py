"""The embedded Redis killed (the OOM killer, an operator's kill -9): the gateway must restart it, and the
events spooled meanwhile must reach it on their own, without waiting for new traffic to trigger a replay."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry

from feedback.embedded_redis import EmbeddedRedis
from feedback.events import CompletionEvent, decode_event
from feedback.recorder import EventRecorder, RecorderMetrics
from feedback.redis_connection import redis_client
from feedback.spool import DiskSpool


def _event(event_id: str) -> CompletionEvent:
    return CompletionEvent(
        id=event_id, completion_id=f"chatcmpl-{event_id}", created=time.time(), tenant="t", model="m",
        endpoint="chat.completions", stream=False, request={"messages": []}, choices=[],
    )  # fmt: skip


def _server_pid(url: str) -> int | None:
    try:
        return int(redis.Redis.from_url(url, socket_timeout=1).info("server")["process_id"])
    except (redis.RedisError, OSError):
        return None


async def test_killed_embedded_redis_comes_back_and_gets_the_spooled_events_without_new_traffic(
    tmp_path: Path,
) -> None:
    spool = DiskSpool(tmp_path / "spool")
    async with EmbeddedRedis(tmp_path / "redis") as embedded:
        client = redis_client(embedded.url, timeout_s=0.5)
        recorder = EventRecorder(client, spool, RecorderMetrics(CollectorRegistry()), retry_s=0.1)
        await recorder.start()
        try:
            killed = _server_pid(embedded.url)
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
            for n in range(3):  # written while it is down: into the spool
                recorder.record(_event(f"while-down-{n}"))
            deadline = time.monotonic() + 5
            while spool.pending < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert spool.pending == 3

            # No more traffic from here on.
            deadline = time.monotonic() + 30
            recorded: list[str] = []
            while time.monotonic() < deadline:
                try:
                    entries = redis.Redis.from_url(embedded.url, socket_timeout=1).xrange("hhh:events")
                    recorded = [decode_event(fields[b"event"]).id for _, fields in entries]
                except (redis.RedisError, OSError):
                    pass
                if len(recorded) == 3:
                    break
                await asyncio.sleep(0.1)
            restarted = _server_pid(embedded.url)
        finally:
            await recorder.close()
            await client.aclose()

    assert restarted is not None
    assert restarted != killed
    assert recorded == ["while-down-0", "while-down-1", "while-down-2"]
    assert spool.pending == 0
