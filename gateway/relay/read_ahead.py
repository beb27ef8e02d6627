"""Reading a stream's chunks ahead while its consumer is busy: the one stage of the relay that buffers.

The stream guard (``gateway.guarded.stream_guard``) awaits a window's check before it reads on. With
this stage in front of it, the upstream is read during that check, so the guard can see what is already
there and judge it as one larger window instead of one window per sentence. Under load (checks slower
than the upstream writes) windows grow and the checks per answer fall; at an LLM's pace, when each
check ends before the next sentence is written, nothing changes.

What it holds is bounded: at most ``max_chunks`` chunks and ``max_bytes`` of them (as JSON), plus the
one chunk that crossed the bound; the reader waits for room. ``aclose`` stops the reader and closes
the source, so an upstream is never left open by a consumer that stopped early.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import anyio
import msgspec

from gateway.relay.streaming import Chunk

MAX_CHUNKS = 256
MAX_BYTES = 256 * 1024


class _End:
    """The source ended (``error`` is None) or failed with ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class ReadAhead:
    def __init__(
        self, source: AsyncIterator[Chunk], max_chunks: int = MAX_CHUNKS, max_bytes: int = MAX_BYTES
    ) -> None:
        self._source = source
        self.max_chunks = max(1, max_chunks)
        self.max_bytes = max_bytes
        self._held: deque[tuple[Chunk, int]] = deque()
        self._held_bytes = 0
        self._end: _End | None = None
        self._arrived = asyncio.Event()  # a chunk or the end came
        self._room = asyncio.Event()  # the consumer took a chunk
        self._task: asyncio.Task[None] | None = None
        self._finished = False

    @property
    def ready(self) -> bool:
        """Whether the next chunk is here already (taking it will not wait for the upstream)."""
        return bool(self._held)

    def __aiter__(self) -> ReadAhead:
        return self

    async def __anext__(self) -> Chunk:
        if self._finished:
            raise StopAsyncIteration
        if self._task is None:
            self._task = asyncio.create_task(self._read(), name="read-ahead")
        while not self._held and self._end is None:
            self._arrived.clear()
            await self._arrived.wait()
        if self._held:
            chunk, size = self._held.popleft()
            self._held_bytes -= size
            self._room.set()
            return chunk
        self._finished = True
        assert self._end is not None
        if self._end.error is not None:
            raise self._end.error
        raise StopAsyncIteration

    async def _read(self) -> None:
        try:
            async for chunk in self._source:
                size = len(msgspec.json.encode(chunk))
                self._held.append((chunk, size))
                self._held_bytes += size
                self._arrived.set()
                while len(self._held) >= self.max_chunks or self._held_bytes >= self.max_bytes:
                    self._room.clear()
                    await self._room.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, in order, after what came before
            self._end = _End(exc)
        else:
            self._end = _End()
        self._arrived.set()

    async def aclose(self) -> None:
        """Stop reading and close the source (again is harmless). Shielded: it runs when a client went
        away too, inside a cancelled scope, where an unshielded await would end before the source closed."""
        self._finished = True
        with anyio.CancelScope(shield=True):
            if self._task is not None and not self._task.done():
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            close = getattr(self._source, "aclose", None)
            if close is not None:
                await close()
