"""The few Redis commands the response-id bindings use (``SET`` with ``NX``/``PX``, ``GET``, ``PEXPIRE``),
in memory, for unit tests of the Responses routes; the security tests run the same bindings on a real
redis-server. Expiry is not kept: no unit test waits for a TTL."""

from __future__ import annotations

from typing import cast

import redis.asyncio

from gateway.responses.owners import OwnerMetrics, ResponseOwners


class MemoryRedis:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.ttls_ms: dict[str, int] = {}

    async def set(self, name: str, value: bytes, px: int | None = None, nx: bool = False) -> bool | None:
        if nx and name in self.values:
            return None
        self.values[name] = value
        if px is not None:
            self.ttls_ms[name] = px
        return True

    async def get(self, name: str) -> bytes | None:
        return self.values.get(name)

    async def pexpire(self, name: str, ms: int) -> bool:
        if name not in self.values:
            return False
        self.ttls_ms[name] = ms
        return True


def memory_owners(ttl_s: float = 3600.0) -> tuple[ResponseOwners, MemoryRedis]:
    memory = MemoryRedis()
    owners = ResponseOwners(cast(redis.asyncio.Redis, memory), ttl_s, OwnerMetrics(None))
    return owners, memory
