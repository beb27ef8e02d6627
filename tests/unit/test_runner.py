"""The batching runner: batches form under concurrency, work stays off the event loop, failures reach
every caller of the batch, and callers that gave up are skipped."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from guards.metrics import GuardMetrics
from guards.runner import BatchingRunner, RunnerPool


class Recorder:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(items)
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        return [item.upper() for item in items]


async def test_concurrent_calls_are_batched_off_the_loop() -> None:
    recorder = Recorder(delay_s=0.01)
    runner = BatchingRunner("t", recorder, max_batch=64, max_wait_ms=5)
    await runner.start()
    try:
        results = await asyncio.gather(*(runner.run([f"a{i}", f"b{i}"]) for i in range(32)))
        assert results[7] == ["A7", "B7"]  # each caller gets its own results back, in order
        assert len(recorder.batches) < 8  # 64 texts in a few batches, not 32 calls
        assert max(len(b) for b in recorder.batches) > 2
        assert recorder.threads == {"runner-t_0"}
        assert threading.current_thread().name not in recorder.threads
    finally:
        await runner.close()


async def test_big_calls_are_sliced_to_max_batch() -> None:
    recorder = Recorder()
    runner = BatchingRunner("slices", recorder, max_batch=4, max_wait_ms=0)
    await runner.start()
    try:
        assert await runner.run([str(i) for i in range(10)]) == [str(i) for i in range(10)]
        assert [len(b) for b in recorder.batches] == [4, 4, 2]
    finally:
        await runner.close()


async def test_a_failing_batch_fails_each_caller() -> None:
    def broken(items: list[str]) -> list[str]:
        raise ValueError("model exploded")

    runner = BatchingRunner("broken", broken, max_wait_ms=2)
    await runner.start()
    try:
        results = await asyncio.gather(runner.run(["a"]), runner.run(["b"]), return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)
        runner._predict = Recorder()  # type: ignore[assignment]
        assert await runner.run(["c"]) == ["C"]  # the runner survives the failure
    finally:
        await runner.close()


async def test_a_caller_that_times_out_does_not_break_the_batch() -> None:
    recorder = Recorder(delay_s=0.05)
    runner = BatchingRunner("slow", recorder, max_wait_ms=0)
    await runner.start()
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(runner.run(["x"]), 0.01)
        assert await runner.run(["y"]) == ["Y"]
    finally:
        await runner.close()


async def test_a_call_in_a_batch_when_the_runner_closes_gets_that_batch_s_end() -> None:
    """Closing cancels the calls still waiting; one whose batch is running gets what the batch gives
    when it ends (a caller never hangs on a runner that closed under it)."""
    started, release = threading.Event(), threading.Event()

    def held(items: list[str]) -> list[str]:
        started.set()
        release.wait(5)
        return items

    runner = BatchingRunner("held", held, max_wait_ms=0)
    await runner.start()
    call = asyncio.ensure_future(runner.run(["a"]))
    await asyncio.to_thread(started.wait, 5)
    closing = asyncio.ensure_future(runner.close())
    await asyncio.sleep(0)
    release.set()
    await closing
    assert await asyncio.wait_for(call, 5) == ["a"]


async def test_a_batch_the_executor_refuses_fails_its_callers_and_the_runner_serves_on() -> None:
    runner = BatchingRunner("refused", Recorder(), max_wait_ms=0)
    await runner.start()
    try:
        executor = runner._executor
        assert executor is not None
        executor.shutdown()
        with pytest.raises(RuntimeError, match="shutdown"):
            await asyncio.wait_for(runner.run(["a"]), 5)
        assert runner._task is not None
        assert not runner._task.done()
    finally:
        await runner.close()


async def test_metrics_and_warmup() -> None:
    registry = CollectorRegistry()
    metrics = GuardMetrics(registry)
    recorder = Recorder()
    runner = BatchingRunner("m", recorder, metrics=metrics, warmup=["warm"])
    await runner.start()
    try:
        assert recorder.batches == [["warm"]]
        await runner.run(["a", "b"])
        assert registry.get_sample_value("hhh_runner_batch_size_count", {"runner": "m"}) == 2
        assert registry.get_sample_value("hhh_runner_queue_wait_seconds_count", {"runner": "m"}) == 2
    finally:
        await runner.close()


async def test_pool_shares_one_runner_per_key() -> None:
    pool = RunnerPool()
    built = []

    def build() -> BatchingRunner[str, str]:
        built.append(1)
        return BatchingRunner("shared", Recorder())

    first = await pool.get("model@cpu", build)
    second = await pool.get("model@cpu", build)
    assert first is second
    assert built == [1]
    await pool.close()


async def test_unstarted_runner_says_so() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await BatchingRunner("idle", Recorder()).run(["a"])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_lone_call_is_not_held_for_company_that_is_not_coming() -> None:
    """A quiet gateway's single check (a lone stream's window, a prompt) runs at once, however long
    ``max_wait_ms`` is, when no other call came shortly before it."""
    recorder, clock = Recorder(), Clock()
    runner = BatchingRunner("lone", recorder, max_wait_ms=60_000, clock=clock)
    await runner.start()
    try:
        assert await asyncio.wait_for(runner.run(["a"]), 30) == ["A"]  # the first call
        clock.now += 1_000  # the next comes long after (more than twice the wait)
        assert await asyncio.wait_for(runner.run(["b"]), 30) == ["B"]
    finally:
        await runner.close()


async def test_calls_arriving_close_together_wait_for_each_other() -> None:
    """Under load (calls arriving within the wait of each other) a lone call waits ``max_wait_ms``, and
    a call that comes meanwhile joins its batch."""
    recorder, clock = Recorder(), Clock()
    runner = BatchingRunner("busy", recorder, max_wait_ms=2_000, clock=clock)
    await runner.start()
    try:
        assert await runner.run(["a"]) == ["A"]  # the runner was quiet: a batch of its own
        clock.now += 0.001
        second = asyncio.ensure_future(runner.run(["b"]))  # came right after: waits for company
        await asyncio.sleep(0.01)
        clock.now += 0.001
        third = asyncio.ensure_future(runner.run(["c"]))
        assert list(await asyncio.wait_for(asyncio.gather(second, third), 30)) == [["B"], ["C"]]
        assert recorder.batches == [["a"], ["b", "c"]]
    finally:
        await runner.close()


async def test_patient_calls_wait_for_the_next_call_without_patience_and_share_its_batch() -> None:
    """Calls that bring patience (a stream's later windows) wait for company while calls keep coming;
    the first call without patience (a prompt, a first window) runs at once, with them in its batch."""
    recorder, clock = Recorder(), Clock()
    runner = BatchingRunner("patient", recorder, max_wait_ms=0, clock=clock)
    await runner.start()
    try:
        assert await runner.run(["a"]) == ["A"]
        clock.now += 0.001
        second = asyncio.ensure_future(runner.run(["b"], patience_s=3600))
        await asyncio.sleep(0.01)
        clock.now += 0.001
        third = asyncio.ensure_future(runner.run(["c"], patience_s=3600))
        await asyncio.sleep(0.01)
        assert recorder.batches == [["a"]]  # both still waiting for company
        clock.now += 0.001
        fourth = runner.run(["d"])
        results = await asyncio.wait_for(asyncio.gather(second, third, fourth), 30)
        assert list(results) == [["B"], ["C"], ["D"]]
        assert recorder.batches == [["a"], ["b", "c", "d"]]
    finally:
        await runner.close()


async def test_a_patient_call_runs_at_once_when_no_company_is_coming() -> None:
    """A lone stream's later window: the call before came longer ago than it would wait."""
    recorder, clock = Recorder(), Clock()
    runner = BatchingRunner("alone", recorder, max_wait_ms=0, clock=clock)
    await runner.start()
    try:
        assert await runner.run(["a"]) == ["A"]
        clock.now += 7200
        assert await asyncio.wait_for(runner.run(["b"], patience_s=3600), 30) == ["B"]
    finally:
        await runner.close()


async def test_patient_calls_that_fill_a_batch_run_at_once() -> None:
    recorder, clock = Recorder(), Clock()
    runner = BatchingRunner("full", recorder, max_batch=2, max_wait_ms=0, clock=clock)
    await runner.start()
    try:
        assert await runner.run(["a"]) == ["A"]
        clock.now += 0.001
        first = asyncio.ensure_future(runner.run(["b"], patience_s=3600))
        await asyncio.sleep(0.01)
        clock.now += 0.001
        second = runner.run(["c"], patience_s=3600)
        assert list(await asyncio.wait_for(asyncio.gather(first, second), 30)) == [["B"], ["C"]]
        assert recorder.batches == [["a"], ["b", "c"]]
    finally:
        await runner.close()


async def test_a_patient_call_runs_when_its_patience_runs_out() -> None:
    recorder = Recorder()
    runner = BatchingRunner("out", recorder, max_wait_ms=0)
    await runner.start()
    try:
        assert await runner.run(["a"]) == ["A"]
        assert await asyncio.wait_for(runner.run(["b"], patience_s=0.05), 30) == ["B"]
        assert recorder.batches == [["a"], ["b"]]
    finally:
        await runner.close()


async def test_a_patient_call_given_up_on_is_dropped_while_it_waits() -> None:
    recorder, clock = Recorder(), Clock()
    runner = BatchingRunner("dropped", recorder, max_wait_ms=0, clock=clock)
    await runner.start()
    try:
        assert await runner.run(["a"]) == ["A"]
        clock.now += 0.001
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(runner.run(["b"], patience_s=3600), 0.05)
        clock.now += 0.001
        assert await asyncio.wait_for(runner.run(["c"]), 30) == ["C"]
        assert recorder.batches == [["a"], ["c"]]
    finally:
        await runner.close()


async def test_one_policys_long_patience_never_holds_anothers_window_past_its_own() -> None:
    """Tenants' policies may set different ``patience_ms``: a batch runs at the earliest deadline of the
    calls waiting in it, so a long-patience stream cannot stretch a short-patience stream's wait."""
    recorder = Recorder()
    runner = BatchingRunner("tenants", recorder, max_wait_ms=0)
    await runner.start()
    try:
        assert await runner.run(["a"]) == ["A"]
        patient = asyncio.ensure_future(runner.run(["b"], patience_s=3600))
        hasty = runner.run(["c"], patience_s=0.05)
        assert list(await asyncio.wait_for(asyncio.gather(patient, hasty), 30)) == [["B"], ["C"]]
        assert recorder.batches == [["a"], ["b", "c"]]
    finally:
        await runner.close()
