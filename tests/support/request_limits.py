"""A slow model the test holds back, and a guard that runs it through the real batching runner, for the
tests of what one request may cost (tests/security)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import httpx
import msgspec
from litestar.types import ASGIApp

from guards.runner import BatchingRunner
from guards.verdict import JudgeContext, Stage, Verdict


class GatedModel:
    """A model whose batches wait until ``release()``: a huge request can be caught holding it."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Event()  # some batch has started
        self._gate = threading.Event()

    def release(self) -> None:
        self._gate.set()

    async def wait_started(self) -> None:
        if not await asyncio.to_thread(self.started.wait, 30):
            raise AssertionError("the model never started a batch")

    def __call__(self, texts: list[str]) -> list[float]:
        self.batches.append(texts)
        self.started.set()
        self._gate.wait(30)
        return [0.0] * len(texts)

    def texts_run(self, prefix: str) -> int:
        return sum(text.startswith(prefix) for batch in self.batches for text in batch)


class _NoConfig(msgspec.Struct):
    pass


class RunnerGuard:
    """A guard that scores every text through a ``BatchingRunner`` over ``model`` (it never flags)."""

    kind: ClassVar[str] = "gated"
    stages: ClassVar[frozenset[Stage]] = frozenset(Stage)
    config_type: ClassVar[type[msgspec.Struct]] = _NoConfig
    default_thresholds: ClassVar[Mapping[str, float]] = {"toxicity": 0.5}

    def __init__(self, model: GatedModel, max_batch: int = 8, name: str = "toxicity") -> None:
        self._name = name
        self.judged: list[list[str]] = []  # each call's texts, as they reach the runner
        self.runner: BatchingRunner[str, float] = BatchingRunner(
            name, model, max_batch=max_batch, max_wait_ms=0
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def categories(self) -> Sequence[str]:
        return ["toxicity"]

    async def start(self) -> None:
        await self.runner.start()

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        self.judged.append(list(texts))  # the runner queues the call before this coroutine next waits
        scores = await self.runner.run(texts)
        return [Verdict(self._name, True, {"toxicity": score}, []) for score in scores]

    async def until_judged(self, text: str) -> None:
        for _ in range(3_000):
            if any(text in texts for texts in self.judged):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{text!r} never reached the runner")

    async def close(self) -> None:
        await self.runner.close()


@asynccontextmanager
async def served(app: ASGIApp, headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the test's own event loop, as uvicorn runs it, so concurrent requests really are
    concurrent (Litestar's test clients run the app on a loop of their own, one request at a time)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        await outbox.put(message)

    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")
    try:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway.test", headers=headers
        ) as client:
            yield client
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await lifespan
