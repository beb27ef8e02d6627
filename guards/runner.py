"""The batching model runner: one per model and device, shared by every guard that uses that model.

Concurrent calls are collected into micro-batches (up to ``max_batch`` texts, waiting at most
``max_wait_ms`` for company) and run on one worker thread, never on the event loop. While a batch
runs, new calls queue, so the next batch forms by itself under load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from guards.metrics import GuardMetrics

log = logging.getLogger("hhh.runner")

In = TypeVar("In")
Out = TypeVar("Out")


class _Call(Generic[In, Out]):
    __slots__ = ("enqueued", "future", "items")

    def __init__(self, items: list[In], future: asyncio.Future[list[Out]]) -> None:
        self.items = items
        self.future = future
        self.enqueued = time.perf_counter()


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
    ) -> None:
        self.name = name
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self._metrics = metrics
        self._warmup = list(warmup)
        self._queue: asyncio.Queue[_Call[In, Out]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"runner-{self.name}")
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._serve(), name=f"runner-{self.name}")
        if self._warmup:
            started = time.perf_counter()
            await self.run(self._warmup)
            log.info("runner %s warmed up in %.0f ms", self.name, (time.perf_counter() - started) * 1000)

    async def run(self, items: Sequence[In]) -> list[Out]:
        """Predict ``items``, batched with whatever else is asked at the same moment."""
        if not items:
            return []
        if self._queue is None:
            raise RuntimeError(f"runner {self.name} is not started")
        future: asyncio.Future[list[Out]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Call(list(items), future))
        return await future

    async def run_one(self, item: In) -> Out:
        (result,) = await self.run([item])
        return result

    async def _serve(self) -> None:
        assert self._queue is not None
        while True:
            calls = [await self._queue.get()]
            if self.max_wait_s and self._queue.empty():
                await asyncio.sleep(self.max_wait_s)  # give concurrent callers a moment to join
            size = len(calls[0].items)
            while size < self.max_batch and not self._queue.empty():
                call = self._queue.get_nowait()
                calls.append(call)
                size += len(call.items)
            calls = [call for call in calls if not call.future.done()]  # callers that gave up
            if calls:
                await self._run_batch(calls)

    async def _run_batch(self, calls: list[_Call[In, Out]]) -> None:
        items = [item for call in calls for item in call.items]
        started = time.perf_counter()
        if self._metrics is not None:
            self._metrics.batch_size.labels(self.name).observe(len(items))
            for call in calls:
                self._metrics.queue_wait.labels(self.name).observe(started - call.enqueued)
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self._predict_in_slices, items)
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the failure
            for call in calls:
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        if self._metrics is not None:
            self._metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - started)
        offset = 0
        for call in calls:
            result, offset = outputs[offset : offset + len(call.items)], offset + len(call.items)
            if not call.future.done():
                call.future.set_result(result)

    def _predict_in_slices(self, items: list[In]) -> list[Out]:
        outputs: list[Out] = []
        for start in range(0, len(items), self.max_batch):
            outputs.extend(self._predict(items[start : start + self.max_batch]))
        if len(outputs) != len(items):
            raise RuntimeError(f"runner {self.name}: {len(outputs)} outputs for {len(items)} inputs")
        return outputs

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
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
