"""The read-ahead stage in front of the stream guard: order, errors, its bound, and closing the upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.errors import UpstreamStreamBroken
from gateway.relay.read_ahead import ReadAhead

pytestmark = pytest.mark.asyncio


def _chunk(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


async def _source(texts: list[str], log: list[str]) -> AsyncIterator[dict[str, Any]]:
    try:
        for text in texts:
            log.append(f"sent {text[:8]}")
            yield _chunk(text)
    finally:
        log.append("closed")


async def test_chunks_come_out_in_order_and_the_stream_ends() -> None:
    log: list[str] = []
    ahead = ReadAhead(_source(["a", "b", "c"], log))
    assert [c["choices"][0]["delta"]["content"] async for c in ahead] == ["a", "b", "c"]
    await ahead.aclose()
    assert log[-1] == "closed"


async def test_what_arrived_during_a_pause_is_ready_at_once() -> None:
    ahead = ReadAhead(_source(["a", "b", "c"], []))
    first = await ahead.__anext__()
    assert first["choices"][0]["delta"]["content"] == "a"
    await asyncio.sleep(0.01)  # the consumer is busy (a check): the reader goes on
    assert ahead.ready
    assert [c["choices"][0]["delta"]["content"] async for c in ahead] == ["b", "c"]
    assert not ahead.ready
    await ahead.aclose()


async def test_an_upstream_failure_comes_after_the_chunks_before_it() -> None:
    async def failing() -> AsyncIterator[dict[str, Any]]:
        yield _chunk("a")
        yield _chunk("b")
        raise UpstreamStreamBroken("The upstream sent a malformed stream chunk.")

    ahead = ReadAhead(failing())
    got = []

    async def consume() -> None:
        async for chunk in ahead:
            got.append(chunk["choices"][0]["delta"]["content"])

    with pytest.raises(UpstreamStreamBroken):
        await consume()
    assert got == ["a", "b"]
    with pytest.raises(StopAsyncIteration):  # once ended, it stays ended
        await ahead.__anext__()
    await ahead.aclose()


async def test_a_flooding_upstream_cannot_make_it_hold_more_than_its_bound_in_chunks() -> None:
    log: list[str] = []
    ahead = ReadAhead(_source([str(i) for i in range(10_000)], log), max_chunks=8)
    await ahead.__anext__()
    await asyncio.sleep(0.05)  # the consumer stalls; the upstream has plenty more
    assert len([line for line in log if line.startswith("sent")]) <= 1 + 8 + 1
    await ahead.aclose()
    assert log[-1] == "closed"


async def test_a_flooding_upstream_cannot_make_it_hold_more_than_its_bound_in_bytes() -> None:
    log: list[str] = []
    big = ["x" * 100_000 + str(i) for i in range(100)]
    ahead = ReadAhead(_source(big, log), max_chunks=1000, max_bytes=300_000)
    await ahead.__anext__()
    await asyncio.sleep(0.05)
    # 300 kB of 100 kB chunks: three held, plus the one that crossed the bound, plus the one taken.
    assert len([line for line in log if line.startswith("sent")]) <= 5
    await ahead.aclose()


async def test_a_consumer_that_stops_early_closes_the_upstream() -> None:
    log: list[str] = []
    ahead = ReadAhead(_source([str(i) for i in range(100)], log), max_chunks=4)
    await ahead.__anext__()
    await asyncio.sleep(0.01)
    await ahead.aclose()
    assert log[-1] == "closed"
    with pytest.raises(StopAsyncIteration):
        await ahead.__anext__()


async def test_a_cancelled_consumer_still_closes_the_upstream() -> None:
    log: list[str] = []

    async def slow() -> AsyncIterator[dict[str, Any]]:
        try:
            yield _chunk("a")
            await asyncio.sleep(60)
            yield _chunk("never")
        finally:
            log.append("closed")

    ahead = ReadAhead(slow())

    async def consume() -> None:
        try:
            async for _ in ahead:
                pass
        finally:
            await ahead.aclose()

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["closed"]
