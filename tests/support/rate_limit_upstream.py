"""Upstreams for the rate-limit tests: the shared fake, plus answers the test holds open on purpose.

- ``held``: a non-stream answer that waits until the test releases it (a request in flight for as long
  as the test wants, to fill concurrency slots);
- ``endless-stream``: a stream that never ends by itself (a client must leave it);
- ``no-usage``: a stream with no usage chunk, as llama.cpp sends one without include_usage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from litestar.types import ASGIApp

from tests.support.fake_upstream import FakeUpstream, chunk, completion, sse

MODELS = ["held", "endless-stream", "no-usage"]


class HoldingUpstream:
    def __init__(self) -> None:
        self.fake = FakeUpstream()
        self.release = asyncio.Event()
        self.held = 0  # answers waiting on ``release``
        self.endless_closed = asyncio.Event()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            listing = await self.fake.handle(request)
            models = listing.json()["data"] + [{"id": model} for model in MODELS]
            return httpx.Response(200, json={"object": "list", "data": models})
        body: dict[str, Any] = json.loads(await request.aread())
        model = body.get("model")
        if model == "held":
            self.held += 1
            try:
                await self.release.wait()
            finally:
                self.held -= 1
            return httpx.Response(200, json=completion("released", model="held"))
        if model == "endless-stream":
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=self._endless())
        if model == "no-usage":
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=self._no_usage()
            )
        return await self.fake.handle(request)

    async def _endless(self) -> AsyncIterator[bytes]:
        try:
            yield sse(chunk({"role": "assistant"}))
            while True:
                yield sse(chunk({"content": "tick "}))
                await asyncio.sleep(0.01)
        finally:
            self.endless_closed.set()

    async def _no_usage(self) -> AsyncIterator[bytes]:
        yield sse(chunk({"role": "assistant"}))
        for _ in range(10):
            yield sse(chunk({"content": "word "}))
        yield sse(chunk({}, finish="stop"))
        yield sse("[DONE]")


@asynccontextmanager
async def serving(app: ASGIApp, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan run on the test's own event loop (Litestar's test client runs the app on a
    thread of its own, one request at a time), and an httpx client in front of it."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    started = asyncio.Event()
    outcome: list[dict[str, Any]] = []

    async def receive() -> dict[str, str]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        outcome.append(message)
        started.set()

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    await asyncio.wait_for(started.wait(), 60)
    assert outcome[-1]["type"] == "lifespan.startup.complete", outcome
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway.test", headers={"authorization": f"Bearer {key}"}
        ) as client:
            yield client
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(lifespan, 60)
