"""The one way the gateway and feedback open a Redis client: every caller states how long it will wait.

redis-py never retries here: a caller that can do something better than wait (spool events, apply the
limiter's fail mode, tell the operator) is told at once, and one that cannot chooses a longer timeout.
"""

from __future__ import annotations

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

# The recorder's default: it sits beside live traffic, so a Redis that does not answer within this is
# treated as away and the events go to the spool instead of piling up in memory.
FAIL_FAST_TIMEOUT_S = 2.0
# The command line's batch jobs (sync, export) send pipelines of thousands of commands and have nothing
# to fall back on: they wait long for a busy server...
BATCH_TIMEOUT_S = 30.0
# ...but not for one that is not there at all.
BATCH_CONNECT_TIMEOUT_S = 5.0


def redis_client(
    url: str, *, timeout_s: float = FAIL_FAST_TIMEOUT_S, connect_timeout_s: float | None = None
) -> redis.asyncio.Redis:
    """A client (nothing is connected yet) whose commands fail after ``timeout_s`` and whose connection
    attempts fail after ``connect_timeout_s`` (the same as ``timeout_s`` when not given), never retried."""
    return redis.asyncio.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s if connect_timeout_s is None else connect_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
