"""The one way a Redis client is opened: each caller's timeouts, and no retries behind its back."""

from __future__ import annotations

from feedback.redis_connection import FAIL_FAST_TIMEOUT_S, redis_client

UNUSED_URL = "redis://127.0.0.1:1/0"  # nothing here connects


async def test_a_redis_client_fails_fast_by_default_and_never_retries() -> None:
    client = redis_client(UNUSED_URL)
    connection = client.connection_pool.make_connection()
    await client.aclose()
    assert connection.socket_timeout == connection.socket_connect_timeout == FAIL_FAST_TIMEOUT_S
    assert connection.retry.get_retries() == 0


async def test_a_redis_client_can_wait_longer_for_answers_than_for_a_connection() -> None:
    client = redis_client(UNUSED_URL, timeout_s=30.0, connect_timeout_s=5.0)
    connection = client.connection_pool.make_connection()
    await client.aclose()
    assert (connection.socket_timeout, connection.socket_connect_timeout) == (30.0, 5.0)
    assert connection.retry.get_retries() == 0
