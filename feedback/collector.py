"""Reading the event stream through a Redis consumer group into the feedback store.

Delivery is at least once: an entry is acknowledged only after it is filed, and a restarted collector
first re-reads what it had been given but not acknowledged; entries a dead consumer held too long are
claimed. Filing is idempotent (a hash field per event), so a second delivery changes nothing. An entry
that cannot be decoded is moved to a dead-letter list with the reason, never dropped in silence.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import msgspec
import redis.asyncio
import redis.exceptions

from feedback.events import decode_event, decode_feedback, decode_revision
from feedback.store import FeedbackStore

log = logging.getLogger("hhh.feedback")

GROUP = "hhh-labelstudio"
CLAIM_IDLE_MS = 5 * 60 * 1000  # a consumer silent this long is taken for dead


def default_consumer_name() -> str:
    """Stable across restarts, so a restarted sync re-reads its own unacknowledged entries at once (one
    sync runs at a time: it holds a lock)."""
    return socket.gethostname()


class EventCollector:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        store: FeedbackStore,
        stream: str,
        settle_s: float,
        *,
        group: str = GROUP,
        consumer: str | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.stream = stream
        self.settle_s = settle_s
        self.group = group
        self.consumer = consumer or default_consumer_name()
        self._own_pending_done = False

    async def ensure_group(self) -> None:
        """The group starts at the stream's beginning: history recorded before the first sync counts."""
        try:
            await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            log.info("created consumer group %s on %s", self.group, self.stream)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def collect(self, count: int = 500) -> int:
        """File one batch of entries; returns how many (0: nothing waiting)."""
        entries = await self._next_batch(count)
        if not entries:
            return 0
        for entry_id, fields in entries:
            await self._file(entry_id, fields)
        await self.client.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])
        return len(entries)

    async def lag(self) -> int | None:
        """Entries not yet read by the group, for a progress bar; None when Redis cannot say cheaply."""
        for group in await self.client.xinfo_groups(self.stream):
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) != self.group:
                continue
            if group.get("lag") is not None:  # Redis 7+
                return int(group["lag"])
            if group.get("last-delivered-id") in (b"0-0", "0-0"):  # nothing read yet: all of it
                return int(await self.client.xlen(self.stream))
        return None

    async def _next_batch(self, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        if not self._own_pending_done:  # what this consumer was given before a crash, first
            own = await self._read("0", count)
            if own:
                return own
            self._own_pending_done = True
            claimed: Any = await self.client.xautoclaim(
                self.stream, self.group, self.consumer, CLAIM_IDLE_MS, "0-0", count=count
            )
            if claimed[1]:
                log.info("claimed %d events a stopped consumer had not finished", len(claimed[1]))
                return [(i, f) for i, f in claimed[1] if f is not None]
        return await self._read(">", count)

    async def _read(self, start: str, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply: Any = await self.client.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=count
        )
        if not reply:
            return []
        return [(i, f) for i, f in reply[0][1] if f]  # a trimmed entry comes back without fields

    async def _file(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        kind, raw = fields.get(b"kind"), fields.get(b"event", b"")
        try:
            if kind == b"completion":
                event = decode_event(raw)
                await self.store.add_completion(event, raw, self.settle_s)
            elif kind == b"feedback":
                await self.store.add_feedback(decode_feedback(raw), raw)
            elif kind == b"revision":
                await self.store.add_revision(decode_revision(raw), raw)
            else:
                raise ValueError(f"unknown event kind {kind!r}")
        except (msgspec.DecodeError, ValueError) as exc:
            log.error("event %s cannot be read (%s); moved to the dead-letter list", entry_id.decode(), exc)
            await self._dead_letter(entry_id, fields, str(exc))

    async def _dead_letter(self, entry_id: bytes, fields: dict[bytes, bytes], reason: str) -> None:
        entry: dict[str, Any] = {
            "id": entry_id.decode(),
            "reason": reason,
            "fields": {k.decode(): v.decode(errors="replace") for k, v in fields.items()},
        }
        pipe: Any = self.client.pipeline(transaction=False)
        pipe.rpush(self.store.key("dead-events"), msgspec.json.encode(entry))
        pipe.hincrby(self.store.key("stats"), "dead_events", 1)
        await pipe.execute()
