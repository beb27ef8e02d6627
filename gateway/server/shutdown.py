"""Graceful shutdown: streams get ``server.shutdown_grace_s`` to finish, then end with an error event and
``[DONE]``, never silently; only then does the server run the lifespan's shutdown, so the event writer is
still there to take the events those streams leave.

uvicorn alone waits its own grace period and then cancels whatever still runs, after which a stream just
stops, and its event reaches a writer that has already stopped. So the server here tells ``Drain`` when
shutdown begins, and waits a little longer than the grace period, which the streams then never outlast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from gateway.errors import ShuttingDown

log = logging.getLogger("hhh.shutdown")

# What uvicorn waits beyond the grace period: long enough for the cut streams to send their last frames.
SERVER_MARGIN_S = 5.0


class _Stream:
    __slots__ = ("cancelled", "ending", "task", "waiting")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task = task
        self.waiting = False  # awaiting the next chunk: a cancellation lands there, in the relay
        self.ending = False
        self.cancelled = False

    def end(self) -> None:
        self.ending = True
        if self.waiting and self.task is not None:
            self.cancelled = True
            self.task.cancel()


class Drain:
    """The streams in flight, and the moment shutdown began."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.started = False
        self.expired = False
        self._streams: set[_Stream] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()  # set whenever no stream is in flight
        self._idle.set()

    def begin(self) -> None:
        """Shutdown begins (in the event loop): streams still running after the grace period are ended."""
        if self.started:
            return
        self.started = True
        log.info("shutting down: %d stream(s) have %.0f s to finish", len(self._streams), self.grace_s)
        self._timer = asyncio.get_running_loop().call_later(self.grace_s, self._expire)

    async def settle(self) -> None:
        """For the lifespan's shutdown, before the event writer closes: begin, if no server did, and wait
        for the streams to end (under uvicorn they have; one it cancelled records as it unwinds)."""
        self.begin()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.grace_s + SERVER_MARGIN_S)
        await asyncio.sleep(0)  # one more turn: a stream's last stage records after it unregistered
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        self.expired = True
        if self._streams:
            log.warning("ending %d stream(s) still running after the grace period", len(self._streams))
        for stream in list(self._streams):
            stream.end()

    async def relay(self, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Pass ``chunks`` on until the grace period runs out; then raise ``ShuttingDown`` (which the SSE
        encoder turns into an error event and ``[DONE]``) after the stages below have wound up."""
        stream = _Stream(asyncio.current_task())
        self._streams.add(stream)
        self._idle.clear()
        try:
            while not (stream.ending or self.expired):
                stream.waiting = True
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if not stream.cancelled:
                        raise  # the client left, or the server is cancelling: not ours to handle
                    if stream.task is not None:
                        stream.task.uncancel()  # the cancellation was ours, and is spent here
                    break
                finally:
                    stream.waiting = False
                yield chunk
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:  # the stages below record what the client received
                await aclose()
            raise ShuttingDown("The gateway is shutting down; the answer was cut short. Try again.")
        finally:
            self._streams.discard(stream)
            if not self._streams:
                self._idle.set()


def serve(app: Any, drain: Drain, sockets: list[Any] | None = None, **options: Any) -> bool:
    """``uvicorn.run``, with a server that starts ``drain`` when shutdown begins; on ``sockets`` when given
    (a worker's own). Returns whether the server had started (False: its start-up failed)."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        async def shutdown(self, sockets: list[Any] | None = None) -> None:
            drain.begin()
            await super().shutdown(sockets=sockets)

    options["timeout_graceful_shutdown"] = drain.grace_s + SERVER_MARGIN_S
    server = DrainingServer(uvicorn.Config(app, **options))
    server.run(sockets=sockets)
    return bool(server.started)
