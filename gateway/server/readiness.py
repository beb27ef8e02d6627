"""/ready's view of the upstreams, probed at most once per ``ttl_s``: an unauthenticated endpoint must not
let anyone make the gateway call every upstream on every request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Probe = Callable[[], Awaitable[dict[str, str]]]


class Readiness:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._states: dict[str, str] | None = None
        self._probed_at = 0.0
        self._lock = asyncio.Lock()  # concurrent callers share one probe (it binds to a loop on first use)

    async def upstreams(self, probe: Probe) -> dict[str, str]:
        """Each upstream's state, from a probe at most ``ttl_s`` old."""
        if self._fresh():
            return dict(self._states or {})
        async with self._lock:
            if not self._fresh():  # another caller may have probed while this one waited
                self._states = await probe()
                self._probed_at = self._clock()
            return dict(self._states or {})

    def _fresh(self) -> bool:
        return self._states is not None and self._clock() - self._probed_at < self._ttl_s
