"""Rate limits and concurrency slots in Redis, shared by every gateway replica.

**Windows.** Requests and tokens per minute use a *sliding-window counter*: each subject (a tenant, or one
API key) keeps a count for the current fixed window and the one before, and the last minute's use is
estimated as ``previous * (share of the previous window still inside the last minute) + current``. Unlike
a fixed window it allows no double burst at a window's edge, and unlike a log of every request its state
is five numbers per subject. It assumes the previous window's traffic was spread evenly over it.

**Concurrency.** Each subject has a sorted set of slots scored by their expiry. A running request's slot
is renewed (``renew``) and removed when the request ends (``finish``); a replica that dies stops renewing,
and its slots expire after ``slot_ttl_s``.

Each decision reads and writes in one Lua script, so replicas never race, and uses Redis's own clock
(``TIME``), so replicas whose clocks differ still agree. A request's keys share one hash tag (its tenant),
so the scripts also run on Redis Cluster.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec
import redis.asyncio

from gateway.rate_limit.settings import RateLimit

Kind = Literal["requests", "tokens", "concurrency"]
KEY_PREFIX = "hhh:ratelimit"
# A refusal for concurrency cannot know when a slot frees; clients retry after this.
CONCURRENCY_RETRY_MS = 1000

_ROLL = """
local function roll(key, index)
  local v = redis.call('HMGET', key, 'w', 'rc', 'rp', 'tc', 'tp')
  local w = tonumber(v[1])
  local rc, rp = tonumber(v[2]) or 0, tonumber(v[3]) or 0
  local tc, tp = tonumber(v[4]) or 0, tonumber(v[5]) or 0
  if w == index then return rc, rp, tc, tp end
  if w == index - 1 then return 0, rc, 0, tc end
  return 0, 0, 0, 0
end
local function store(key, index, rc, rp, tc, tp, window)
  redis.call('HSET', key, 'w', index, 'rc', rc, 'rp', rp, 'tc', tc, 'tp', tp)
  redis.call('PEXPIRE', key, 2 * window)
end
local function clock(given)
  local now = tonumber(given)
  if now then return now end
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: per subject, its counters hash then its slots set. ARGV: now_ms ('' = Redis's clock), window_ms,
# slot_ttl_ms, slot id, then per subject: requests_per_minute, tokens_per_minute, max_concurrent (0: none).
# Returns {admitted, now_ms, then per subject: rc, rp, tc, tp, in_flight}, after the charge if admitted.
_ADMIT = (
    _ROLL
    + """
local now = clock(ARGV[1])
local window, ttl, slot = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local index = math.floor(now / window)
local left = 1 - (now - index * window) / window
local admitted = 1
local states = {}
for i = 1, #KEYS / 2 do
  local rpm, tpm, most = tonumber(ARGV[3 * i + 2]), tonumber(ARGV[3 * i + 3]), tonumber(ARGV[3 * i + 4])
  local rc, rp, tc, tp = roll(KEYS[2 * i - 1], index)
  local in_flight = 0
  if most > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2 * i], '-inf', now)
    in_flight = redis.call('ZCARD', KEYS[2 * i])
    if in_flight >= most then admitted = 0 end
  end
  if rpm > 0 and rp * left + rc + 1 > rpm then admitted = 0 end
  if tpm > 0 and tp * left + tc >= tpm then admitted = 0 end
  states[i] = {rc, rp, tc, tp, in_flight}
end
local result = {admitted, now}
for i = 1, #KEYS / 2 do
  local s = states[i]
  if admitted == 1 then
    if tonumber(ARGV[3 * i + 2]) > 0 or tonumber(ARGV[3 * i + 3]) > 0 then
      s[1] = s[1] + 1
      store(KEYS[2 * i - 1], index, s[1], s[2], s[3], s[4], window)
    end
    if tonumber(ARGV[3 * i + 4]) > 0 then
      redis.call('ZADD', KEYS[2 * i], now + ttl, slot)
      redis.call('PEXPIRE', KEYS[2 * i], 2 * ttl)
      s[5] = s[5] + 1
    end
  end
  for j = 1, 5 do result[#result + 1] = s[j] end
end
return result
"""
)

# KEYS as for admit. ARGV: now_ms, window_ms, slot id, tokens, then per subject: 1 if it counts tokens.
_FINISH = (
    _ROLL
    + """
local now = clock(ARGV[1])
local window, slot, tokens = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local index = math.floor(now / window)
for i = 1, #KEYS / 2 do
  redis.call('ZREM', KEYS[2 * i], slot)
  if tokens > 0 and ARGV[4 + i] == '1' then
    local rc, rp, tc, tp = roll(KEYS[2 * i - 1], index)
    store(KEYS[2 * i - 1], index, rc, rp, tc + tokens, tp, window)
  end
end
return 1
"""
)

# KEYS: the slots sets of one request's subjects. ARGV: now_ms, slot_ttl_ms, slot id.
_RENEW = (
    _ROLL
    + """
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[2])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + ttl, ARGV[3])
  redis.call('PEXPIRE', KEYS[i], 2 * ttl)
end
return 1
"""
)


class Subject(msgspec.Struct, frozen=True):
    """What one set of limits counts: a tenant, or one of its API keys."""

    scope: Literal["tenant", "key"]
    tenant: str
    limit: RateLimit
    counters: str  # Redis hash: the window counts
    slots: str  # Redis sorted set: the concurrency slots

    @classmethod
    def of_tenant(cls, tenant: str, limit: RateLimit) -> Subject:
        base = f"{KEY_PREFIX}:{{{tenant}}}:tenant"
        return cls("tenant", tenant, limit, base, f"{base}:slots")

    @classmethod
    def of_key(cls, tenant: str, key_sha256: str, limit: RateLimit) -> Subject:
        base = f"{KEY_PREFIX}:{{{tenant}}}:key:{key_sha256[:16]}"
        return cls("key", tenant, limit, base, f"{base}:slots")


class Usage(msgspec.Struct, frozen=True):
    """A subject's counts as the decision left them."""

    requests: int
    requests_before: int  # in the previous window
    tokens: int
    tokens_before: int
    in_flight: int


class Refusal(msgspec.Struct, frozen=True):
    kind: Kind
    subject: Subject
    limit: int
    used: float
    retry_after_ms: int


class Decision(msgspec.Struct, frozen=True):
    admitted: bool
    slot: str
    subjects: tuple[Subject, ...]
    usage: tuple[Usage, ...]
    elapsed: float  # the share of the current window that has passed
    window_ms: int

    def refusals(self) -> list[Refusal]:
        found: list[Refusal] = []
        if self.admitted:
            return found
        for subject, use in zip(self.subjects, self.usage, strict=True):
            limit = subject.limit
            if limit.max_concurrent and use.in_flight >= limit.max_concurrent:
                found.append(
                    Refusal("concurrency", subject, limit.max_concurrent, use.in_flight, CONCURRENCY_RETRY_MS)
                )
            # The same tests as the script: a request needs room for itself, tokens need some left.
            requests = estimate(use.requests_before, use.requests, self.elapsed)
            most = limit.requests_per_minute
            if most and requests + 1 > most:
                wait = wait_ms(use.requests_before, use.requests, self.elapsed, most, 1, self.window_ms)
                found.append(Refusal("requests", subject, most, requests, wait))
            tokens = estimate(use.tokens_before, use.tokens, self.elapsed)
            most = limit.tokens_per_minute
            if most and tokens >= most:
                wait = wait_ms(use.tokens_before, use.tokens, self.elapsed, most, 1, self.window_ms)
                found.append(Refusal("tokens", subject, most, tokens, wait))
        return found

    def headers(self) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers, for the subject with the least left of each kind."""
        headers: dict[str, str] = {}
        for kind in ("requests", "tokens"):
            tightest: tuple[int, int, int] | None = None  # remaining, limit, reset_ms
            for subject, use in zip(self.subjects, self.usage, strict=True):
                most = (
                    subject.limit.requests_per_minute
                    if kind == "requests"
                    else subject.limit.tokens_per_minute
                )
                if not most:
                    continue
                now, before = (
                    (use.requests, use.requests_before)
                    if kind == "requests"
                    else (use.tokens, use.tokens_before)
                )
                remaining = max(0, math.floor(most - estimate(before, now, self.elapsed)))
                reset = reset_ms(before, now, self.elapsed, self.window_ms)
                if tightest is None or remaining < tightest[0]:
                    tightest = (remaining, most, reset)
            if tightest is not None:
                headers[f"x-ratelimit-limit-{kind}"] = str(tightest[1])
                headers[f"x-ratelimit-remaining-{kind}"] = str(tightest[0])
                headers[f"x-ratelimit-reset-{kind}"] = duration(tightest[2])
        return headers


def estimate(before: float, now: float, elapsed: float) -> float:
    """Use in the last window's length: the previous window's count weighted by how much of it is left.

    >>> estimate(before=60, now=10, elapsed=0.25)
    55.0
    """
    return before * (1 - elapsed) + now


def wait_ms(before: float, now: float, elapsed: float, limit: int, need: float, window_ms: int) -> int:
    """Milliseconds until ``need`` more fits under ``limit``, if nothing else is spent meanwhile.

    Within this window only the previous window's share shrinks; past its end, this window's count
    becomes the one that shrinks.

    >>> wait_ms(before=10, now=0, elapsed=0.0, limit=10, need=1, window_ms=60_000)  # 1/10 must age out
    6000
    >>> wait_ms(before=0, now=10, elapsed=0.5, limit=10, need=1, window_ms=60_000)  # into the next one
    36000
    """
    room = limit - need - now
    if room >= 0:
        if before <= 0:
            return 0
        return max(0, math.ceil(((1 - room / before) - elapsed) * window_ms))
    room = limit - need
    if room < 0:  # more than a whole window holds: say the longest a window can take
        return 2 * window_ms
    return math.ceil((1 - elapsed) * window_ms + (1 - room / now) * window_ms)


def reset_ms(before: float, now: float, elapsed: float, window_ms: int) -> int:
    """Milliseconds until the subject's use is back to zero (OpenAI's "time until the limit resets")."""
    if now > 0:
        return math.ceil((2 - elapsed) * window_ms)
    if before > 0:
        return math.ceil((1 - elapsed) * window_ms)
    return 0


def duration(ms: int) -> str:
    """In the form OpenAI's headers use.

    >>> duration(20), duration(1500), duration(60_000), duration(90_250)
    ('20ms', '1.5s', '1m0s', '1m30.25s')
    """
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}m{seconds}" if minutes else seconds


def _limit_args(subject: Subject) -> list[int]:
    limit = subject.limit
    return [limit.requests_per_minute or 0, limit.tokens_per_minute or 0, limit.max_concurrent or 0]


class RedisRateLimiter:
    """The shared counters. ``clock`` (milliseconds) is for tests; by default Redis's own clock decides."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        window_s: float = 60.0,
        slot_ttl_s: float = 30.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.window_ms = round(window_s * 1000)
        self.slot_ttl_ms = round(slot_ttl_s * 1000)
        self._clock = clock
        self._admit = client.register_script(_ADMIT)
        self._finish = client.register_script(_FINISH)
        self._renew = client.register_script(_RENEW)

    def _now(self) -> str:
        return "" if self._clock is None else str(round(self._clock()))

    async def admit(self, subjects: Sequence[Subject], slot: str) -> Decision:
        """Check every subject's limits and, only if all pass, count the request and take a slot."""
        keys = [key for subject in subjects for key in (subject.counters, subject.slots)]
        limits = [value for subject in subjects for value in _limit_args(subject)]
        args: list[str | int] = [self._now(), self.window_ms, self.slot_ttl_ms, slot, *limits]
        reply = [int(value) for value in await self._admit(keys=keys, args=args)]
        now = reply[1]
        usage = tuple(Usage(*reply[2 + 5 * i : 7 + 5 * i]) for i in range(len(subjects)))
        elapsed = (now % self.window_ms) / self.window_ms
        return Decision(bool(reply[0]), slot, tuple(subjects), usage, elapsed, self.window_ms)

    async def finish(self, subjects: Sequence[Subject], slot: str, tokens: int) -> None:
        """Free the request's slot and charge the tokens it used."""
        keys = [key for subject in subjects for key in (subject.counters, subject.slots)]
        counts = ["1" if subject.limit.tokens_per_minute else "0" for subject in subjects]
        await self._finish(keys=keys, args=[self._now(), self.window_ms, slot, max(0, tokens), *counts])

    async def renew(self, subjects: Sequence[Subject], slot: str) -> None:
        """Push a running request's slot expiry forward."""
        keys = [subject.slots for subject in subjects if subject.limit.max_concurrent]
        if keys:
            await self._renew(keys=keys, args=[self._now(), self.slot_ttl_ms, slot])
