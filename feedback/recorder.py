"""Recording events off the hot path: into a Redis Stream, or into the local spool while Redis is away.

``record`` only puts bytes on an in-memory queue (microseconds, never raises). One background task
writes them to Redis in batches (``XADD`` with approximate ``MAXLEN`` retention). If Redis fails, the
batch goes to the disk spool, and so does everything after it until the spool has been replayed, in
order, into Redis. Nothing is dropped: at shutdown whatever is still queued goes to Redis or the spool,
and an event recorded after that (a request cut off at the very end) goes straight to the spool.

While anything is spooled, the writer replays it on a timer (``replay_every_s``), not only when new
traffic arrives. Replays are idempotent (``feedback.delivery``): a batch that timed out but ran anyway
is not added twice.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio
import redis.exceptions
from prometheus_client import CollectorRegistry, Counter, Gauge

from feedback.delivery import StreamWriter, new_batch_id, spool_line
from feedback.events import Event, encode_event, event_kind
from feedback.spool import DiskSpool

log = logging.getLogger("hhh.feedback")

# Any Redis failure (unreachable, timing out, still loading its data after a restart, out of memory)
# means "not now": the events wait in the spool.
_REDIS_DOWN = (redis.exceptions.RedisError, OSError)


class RecorderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.recorded = Counter(
            "hhh_events_recorded", "Events written to the Redis stream.", registry=registry
        )
        self.spooled = Counter("hhh_events_spooled", "Events written to the local spool.", registry=registry)
        self.replayed = Counter(
            "hhh_events_replayed", "Spooled events replayed into Redis.", registry=registry
        )
        self.duplicates = Counter(
            "hhh_events_replay_duplicates",
            "Spooled events not replayed: Redis had them already (a timed-out write that ran).",
            registry=registry,
        )
        self.dropped = Counter("hhh_events_dropped", "Events lost. Must stay 0.", registry=registry)
        self.spool_pending = Gauge(
            "hhh_events_spool_pending", "Events waiting in the spool.", registry=registry
        )


class EventRecorder:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        spool: DiskSpool,
        metrics: RecorderMetrics,
        *,
        stream: str = "hhh:events",
        max_length: int = 1_000_000,
        batch: int = 200,
        retry_s: float = 1.0,
        replay_every_s: float = 2.0,
        dedupe_s: float = 3600.0,
    ) -> None:
        self.client = client
        self.spool = spool
        self.metrics = metrics
        self.stream = stream
        self.batch = batch
        self.retry_s = retry_s
        self.replay_every_s = replay_every_s
        self._writer = StreamWriter(client, stream, max_length, dedupe_s)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()  # b"<event id> <kind> <json>", one line
        self._task: asyncio.Task[None] | None = None
        # Taken off the queue, not yet in Redis or the spool, with the batch id it is sent under.
        self._in_flight: tuple[bytes, list[bytes]] | None = None
        self._closed = False
        self.metrics.spool_pending.set(spool.pending)

    def record(self, event: Event) -> None:
        """Hand an event over; returns at once, never raises."""
        try:
            item = event.id.encode() + b" " + event_kind(event).encode() + b" " + encode_event(event)
            if self._closed:  # the writer is gone: keep it on disk for the next start
                self._to_spool(new_batch_id(), [item])
            else:
                self._queue.put_nowait(item)
        except Exception:
            self.metrics.dropped.inc()
            log.exception("could not queue an event")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-recorder")

    async def close(self, drain_s: float = 5.0) -> None:
        """Let the writer finish what is queued; whatever is still unwritten then goes to the spool."""
        if self._task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), drain_s)
            except TimeoutError:
                log.warning("event writer still busy after %.0f s; spooling what is left", drain_s)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._closed = True
        if self._in_flight is not None:  # it may have reached Redis: the same batch id keeps it once
            self._to_spool(*self._in_flight)
            self._in_flight = None
        remaining = []
        while not self._queue.empty():
            remaining.append(self._queue.get_nowait())
        if remaining:
            self._to_spool(new_batch_id(), remaining)
        if self.spool.pending:  # said, never silent: they live only as long as this directory does
            log.warning(
                "%d events wait in the spool at %s; the next gateway started with this data_dir "
                "replays them (a directory deleted with this process, such as a Kubernetes emptyDir, "
                "loses them)",
                self.spool.pending,
                self.spool.directory,
            )

    async def _run(self) -> None:
        while True:
            first = await self._next()
            if first is None:  # nothing new while events wait in the spool: try them again
                await self._replay()
                continue
            batch = [first]
            while len(batch) < self.batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch_id = new_batch_id()
            self._in_flight = (batch_id, batch)
            try:
                await self._deliver_or_spool(batch_id, batch)
            except Exception:
                log.exception("unexpected error writing events; spooling the batch")
                self._to_spool(batch_id, batch)
            self._in_flight = None
            for _ in batch:
                self._queue.task_done()

    async def _next(self) -> bytes | None:
        """The next queued event; None after ``replay_every_s`` without one while the spool is not empty."""
        if not self.spool.pending:
            return await self._queue.get()
        try:
            return await asyncio.wait_for(self._queue.get(), self.replay_every_s)
        except TimeoutError:
            return None

    async def _deliver_or_spool(self, batch_id: bytes, batch: list[bytes]) -> None:
        if self.spool.pending and not await self._replay():
            # Redis still away: keep the order behind what is spooled, and keep memory flat.
            drained = []
            while not self._queue.empty():
                drained.append(self._queue.get_nowait())
            self._to_spool(batch_id, [*batch, *drained])
            for _ in drained:
                self._queue.task_done()
            return
        try:
            await self._writer.first(batch_id, batch)
            self.metrics.recorded.inc(len(batch))
        except _REDIS_DOWN as exc:
            log.warning("Redis unavailable (%s); spooling events to %s", exc, self.spool.directory)
            self._to_spool(batch_id, batch)

    def _to_spool(self, batch_id: bytes, batch: list[bytes]) -> None:
        try:
            self.spool.append([spool_line(batch_id, item) for item in batch])
            self.metrics.spooled.inc(len(batch))
        except OSError:
            self.metrics.dropped.inc(len(batch))
            log.exception("could not spool %d events: they are lost", len(batch))
        self.metrics.spool_pending.set(self.spool.pending)

    async def _replay(self) -> bool:
        """Empty the spool into Redis, oldest first; False if Redis is still away."""
        try:
            replayed = await self.spool.replay(self._replay_batch)
        except _REDIS_DOWN:
            self.metrics.spool_pending.set(self.spool.pending)
            await asyncio.sleep(self.retry_s)  # do not spin while Redis is down
            return False
        if replayed:
            log.info("replayed %d spooled events into Redis", replayed)
        self.metrics.spool_pending.set(self.spool.pending)
        return True

    async def _replay_batch(self, records: list[bytes]) -> None:
        added = await self._writer.replay(records)
        self.metrics.replayed.inc(len(records))
        self.metrics.duplicates.inc(len(records) - added)
