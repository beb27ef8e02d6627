"""Writing events into the Redis stream so that a replay never adds one twice.

A batch that times out may still run: Redis was only paused (a stall, a fork, ``SIGSTOP``), and runs what
was sent once it resumes. The recorder cannot tell, so it spools the batch, and the replay would add the
events again. Each write is therefore one Lua script (atomic: all of a batch went, or none of it) that also
notes what it added, in a sorted set next to the stream, pruned after ``dedupe_s``:

- a first delivery notes its batch id: one entry per batch, so normal traffic costs next to nothing;
- a replay notes each event it adds (replays are rare);
- every write skips an event whose batch went already, or that a replay added (a stale first delivery
  may run after the replay of the same batch).

A record is one line: ``<batch id> <event id> <kind> <event JSON>``. Lines spooled by older versions
(``<kind> <event JSON>``) are replayed as they are, without the check.
"""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio

KINDS = (b"completion", b"feedback")

_SCRIPT = """
local stream, noted = KEYS[1], KEYS[2]
local maxlen, dedupe_ms, batch = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', noted, '-inf', now - dedupe_ms)
local added = 0
for i = 4, #ARGV, 4 do
  local batch_id, event_id = ARGV[i], ARGV[i + 1]
  if event_id == '' or not (redis.call('ZSCORE', noted, 'b:' .. batch_id)
                            or redis.call('ZSCORE', noted, 'e:' .. event_id)) then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'kind', ARGV[i + 2], 'event', ARGV[i + 3])
    added = added + 1
    if batch == '' and event_id ~= '' then
      redis.call('ZADD', noted, now, 'e:' .. event_id)
    end
  end
end
if batch ~= '' then
  redis.call('ZADD', noted, now, 'b:' .. batch)
end
return added
"""


def new_batch_id() -> bytes:
    return uuid.uuid4().hex.encode()


def spool_line(batch_id: bytes, item: bytes) -> bytes:
    """``item`` is what the recorder queues: ``<event id> <kind> <event JSON>``."""
    return batch_id + b" " + item


def parse_line(line: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(batch id, event id, kind, event); empty ids for a line of the older format."""
    head, _, rest = line.partition(b" ")
    if head in KINDS:
        return b"", b"", head, rest
    event_id, _, rest = rest.partition(b" ")
    kind, _, event = rest.partition(b" ")
    return head, event_id, kind, event


class StreamWriter:
    def __init__(
        self, client: redis.asyncio.Redis, stream: str, max_length: int, dedupe_s: float = 3600.0
    ) -> None:
        self.keys = [stream, f"{stream}:delivered"]
        self.max_length = max_length
        self.dedupe_ms = int(dedupe_s * 1000)
        self._script: Any = client.register_script(_SCRIPT)

    async def first(self, batch_id: bytes, items: list[bytes]) -> int:
        """A batch's first delivery: all of it, noted under ``batch_id``."""
        return await self._run(batch_id, [spool_line(batch_id, item) for item in items])

    async def replay(self, lines: list[bytes]) -> int:
        """Spooled lines: each one that is not in the stream already. Returns how many were added."""
        return await self._run(b"", lines)

    async def _run(self, batch: bytes, lines: list[bytes]) -> int:
        args: list[bytes | int] = [self.max_length, self.dedupe_ms, batch]
        for line in lines:
            args.extend(parse_line(line))
        return int(await self._script(keys=self.keys, args=args))
