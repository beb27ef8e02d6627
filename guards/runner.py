"""The batching model runner: one per model and device, shared by every guard that uses that model.

Concurrent calls are collected into micro-batches (up to ``max_batch`` texts) and run on one worker
thread, never on the event loop. While a batch runs, new calls queue, so the next batch forms by itself
under load. A lone call waits up to ``max_wait_ms`` for company only while calls are arriving that
fast (the one before it came less than twice ``max_wait_ms`` earlier): a lone stream or a quiet gateway
is never delayed for company that is not coming. A call may also bring patience of its own (a stream's
later windows, while the guards are ahead of the upstream): then the batch waits for company until the
first waiting call's patience runs out, the batch is full, or a call without patience comes.

One call never holds the model for long: a call bigger than a batch is cut into pieces, and each batch
takes its texts round robin from every waiting call, so a small call is not queued behind a huge one.
A call whose caller gave up (a guard's time-out cancels it) is dropped: its pieces not yet started never
run. Closing the runner cancels the calls still waiting; a call whose batch is running gets that
batch's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from guards.metrics import GuardMetrics

log = logging.getLogger("hhh.runner")

In = TypeVar("In")
Out = TypeVar("Out")


class _Call(Generic[In, Out]):
    """One caller's items, handed out to batches in order; its results come back in the same order."""

    __slots__ = ("deadline", "enqueued", "future", "handed_out", "items", "patience_s", "results")

    def __init__(
        self, items: list[In], future: asyncio.Future[list[Out]], patience_s: float, now: float
    ) -> None:
        self.items = items
        self.future = future
        self.enqueued = time.perf_counter()
        self.patience_s = patience_s
        self.deadline = now + patience_s  # on the runner's clock: how long it may wait for company
        self.handed_out = 0  # items given to a batch so far
        self.results: list[Out] = []

    @property
    def remaining(self) -> int:
        return len(self.items) - self.handed_out


class _Piece(Generic[In, Out]):
    """A run of one call's items in one batch."""

    __slots__ = ("call", "items")

    def __init__(self, call: _Call[In, Out], items: list[In]) -> None:
        self.call = call
        self.items = items


class BatchingRunner(Generic[In, Out]):
    def __init__(
        self,
        name: str,
        predict: Callable[[list[In]], list[Out]],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        metrics: GuardMetrics | None = None,
        warmup: Sequence[In] = (),
        close_predict: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.name = name
        self._close_predict = close_predict  # ends what ``predict`` holds (a child process)
        self._predict = predict
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max_wait_ms / 1000
        self._metrics = metrics
        self._warmup = list(warmup)
        self._waiting: deque[_Call[In, Out]] = deque()  # calls with items not yet handed out
        self._clock = clock  # for arrival times (a test's own clock)
        self._arrived = float("-inf")  # when the latest call came
        self._arrival_gap = float("inf")  # the time between the latest call and the one before
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"runner-{self.name}")
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._serve(), name=f"runner-{self.name}")
        if self._warmup:
            started = time.perf_counter()
            await self.run(self._warmup)
            log.info("runner %s warmed up in %.0f ms", self.name, (time.perf_counter() - started) * 1000)

    async def run(self, items: Sequence[In], patience_s: float = 0.0) -> list[Out]:
        """Predict ``items``, batched with whatever else is asked at the same moment. ``patience_s``: how
        long the call may wait for others to join its batch (0: it runs as soon as the model is free)."""
        if not items:
            return []
        if self._wakeup is None:
            raise RuntimeError(f"runner {self.name} is not started")
        future: asyncio.Future[list[Out]] = asyncio.get_running_loop().create_future()
        now = self._clock()
        call = _Call(list(items), future, max(0.0, patience_s), now)
        self._arrival_gap, self._arrived = now - self._arrived, now
        self._waiting.append(call)
        self._wakeup.set()
        # A caller cancelled here (a time-out) cancels the future too, which drops the call's pieces.
        return await future

    async def run_one(self, item: In) -> Out:
        (result,) = await self.run([item])
        return result

    async def _serve(self) -> None:
        assert self._wakeup is not None
        while True:
            self._drop_abandoned()
            if not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            patience = self._patience_left()
            if patience > 0:  # until then, or until a call comes that changes that (woken by run)
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), patience)
                self._drop_abandoned()
                if self._patience_left() > 0:
                    continue
            elif self._worth_waiting():
                await asyncio.sleep(self.max_wait_s)  # give concurrent callers a moment to join
                self._drop_abandoned()
            pieces = self._next_batch()
            if pieces:
                await self._run_batch(pieces)

    def _worth_waiting(self) -> bool:
        """One call with room beside it, and calls coming in fast enough that another may join it."""
        if not self.max_wait_s or len(self._waiting) != 1 or self._waiting[0].remaining >= self.max_batch:
            return False
        return self._arrival_gap < 2 * self.max_wait_s

    def _patience_left(self) -> float:
        """How much longer the waiting calls may wait for company: every one of them brought patience and
        has some left, the batch has room, and calls are coming often enough that another may join."""
        waiting = self._waiting
        if not waiting or any(call.patience_s <= 0 for call in waiting):
            return 0.0
        if sum(call.remaining for call in waiting) >= self.max_batch:
            return 0.0
        if self._arrival_gap >= max(call.patience_s for call in waiting):
            return 0.0  # the call before came longer ago than they would wait: none is coming
        return max(0.0, min(call.deadline for call in waiting) - self._clock())

    def _drop_abandoned(self) -> None:
        if any(call.future.done() for call in self._waiting):
            self._waiting = deque(call for call in self._waiting if not call.future.done())

    def _next_batch(self) -> list[_Piece[In, Out]]:
        """Up to ``max_batch`` items, shared round robin among the waiting calls: the room left is split
        evenly among the calls left, and the call served first this time goes last next time."""
        waiting = list(self._waiting)
        pieces: list[_Piece[In, Out]] = []
        room = self.max_batch
        for position, call in enumerate(waiting):
            share = -(-room // (len(waiting) - position))  # ceiling division
            take = min(share, call.remaining)
            if take == 0:
                continue
            if call.handed_out == 0 and self._metrics is not None:
                self._metrics.queue_wait.labels(self.name).observe(time.perf_counter() - call.enqueued)
            pieces.append(_Piece(call, call.items[call.handed_out : call.handed_out + take]))
            call.handed_out += take
            room -= take
        self._waiting = deque(call for call in waiting[1:] + waiting[:1] if call.remaining)
        return pieces

    async def _run_batch(self, pieces: list[_Piece[In, Out]]) -> None:
        """Run one batch on the worker thread. Its callers get their results in the loop callback that
        the thread's end schedules, not after this task resumes: under load each turn of the event
        loop waits behind every stream's chunks, and a caller would otherwise wait two more."""
        items = [item for piece in pieces for item in piece.items]
        started = time.perf_counter()
        if self._metrics is not None:
            self._metrics.batch_size.labels(self.name).observe(len(items))
        loop = asyncio.get_running_loop()
        batch_over: asyncio.Future[None] = loop.create_future()

        def deliver(outcome: Future[list[Out]]) -> None:  # on the loop
            try:
                self._deliver(pieces, outcome, started)
            finally:  # the next batch may start, whatever happened here
                if not batch_over.done():  # done: the serving task was cancelled (close)
                    batch_over.set_result(None)

        def ended(outcome: Future[list[Out]]) -> None:  # on the worker thread (or here, if done)
            if not loop.is_closed():
                loop.call_soon_threadsafe(deliver, outcome)

        assert self._executor is not None, "the runner is not started"
        try:
            submitted = self._executor.submit(self._predict_checked, items)
        except RuntimeError as exc:  # the executor was shut down (the runner is closing)
            submitted = Future()
            submitted.set_exception(exc)
        submitted.add_done_callback(ended)
        await batch_over

    def _deliver(self, pieces: list[_Piece[In, Out]], outcome: Future[list[Out]], started: float) -> None:
        """Each caller of a finished batch gets its share of the outputs, or the batch's failure."""
        if outcome.cancelled():  # the executor dropped the batch: the runner is closing
            failure: BaseException | None = RuntimeError(f"runner {self.name} is closed")
        else:
            failure = outcome.exception()
        if failure is not None:  # every caller of the batch gets it
            for piece in pieces:
                piece.call.handed_out = len(piece.call.items)  # the rest of a failed call never runs
                if not piece.call.future.done():
                    piece.call.future.set_exception(failure)
            return
        if self._metrics is not None:
            self._metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - started)
        outputs = outcome.result()
        offset = 0
        for piece in pieces:
            call = piece.call
            call.results += outputs[offset : offset + len(piece.items)]
            offset += len(piece.items)
            if len(call.results) == len(call.items) and not call.future.done():
                call.future.set_result(call.results)

    def _predict_checked(self, items: list[In]) -> list[Out]:
        outputs = self._predict(items)
        if len(outputs) != len(items):
            raise RuntimeError(f"runner {self.name}: {len(outputs)} outputs for {len(items)} inputs")
        return outputs

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for call in self._waiting:
            call.future.cancel()
        self._waiting.clear()
        if self._close_predict is not None:
            # In a thread: a batch running in the child is ended, and the call waiting on it returns.
            await asyncio.to_thread(self._close_predict)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class RunnerPool:
    """One runner per model and device, whoever asks for it."""

    def __init__(self, metrics: GuardMetrics | None = None) -> None:
        self.metrics = metrics
        self._runners: dict[str, BatchingRunner[Any, Any]] = {}

    async def get(self, key: str, build: Callable[[], BatchingRunner[In, Out]]) -> BatchingRunner[In, Out]:
        runner = self._runners.get(key)
        if runner is None:
            runner = build()
            self._runners[key] = runner
            await runner.start()
        return runner

    async def close(self) -> None:
        for runner in self._runners.values():
            await runner.close()
        self._runners.clear()
