"""Feedback and recording across tenants: one tenant's feedback must never apply to another tenant's
completions, and a client-chosen ``x-request-id`` must not let two tenants overwrite each other's data.

The whole path runs for real: the gateway (fake upstream) records into a real Redis, the collector files
the stream into the feedback store, and the export pairs what it finds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient

from feedback.collector import EventCollector
from feedback.preferences.export import ExportOptions, PreferencePair, gather
from feedback.redis_connection import redis_client
from feedback.store import FeedbackStore
from gateway.app import create_app
from gateway.auth import hash_key
from gateway.settings import ApiKey, AuthSettings, RedisSettings, Settings, UpstreamSettings
from guards.policy import Policy, PolicyBook
from tests.support.feedback_servers import distinct_choices_transport
from tests.support.redis_server import redis_server

KEYS = {"t1": "key-of-tenant-one", "t2": "key-of-tenant-two"}
Client = AsyncTestClient  # type: ignore[type-arg]


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as url:
        yield url


@pytest.fixture
async def gateway(tmp_path: Path, redis_url: str) -> AsyncIterator[Callable[[str], Client]]:
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        guards={},
        policies=PolicyBook(default=Policy()),
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1", models=["choices-model"])],
        auth=AuthSettings(keys=[ApiKey(tenant=t, sha256=hash_key(k)) for t, k in KEYS.items()]),
        redis=RedisSettings(url=redis_url),
    )
    app = create_app(settings, upstream_transport=distinct_choices_transport(), guards={})
    async with AsyncTestClient(app) as client:

        def as_tenant(tenant: str) -> Client:
            client.headers["authorization"] = f"Bearer {KEYS[tenant]}"
            return client

        yield as_tenant


async def _chat(client: Client, prompt: str, request_id: str) -> dict[str, Any]:
    body = {"model": "choices-model", "messages": [{"role": "user", "content": prompt}], "n": 2}
    response = await client.post("/v1/chat/completions", json=body, headers={"x-request-id": request_id})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id  # still the client's own, echoed
    answer: dict[str, Any] = response.json()
    return answer


async def _feedback(client: Client, completion_id: str, choice: int, user: str) -> dict[str, Any]:
    body = {"completion_id": completion_id, "preferred_choice": choice, "user": user}
    response = await client.post("/v1/feedback", json=body)
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def _export(redis_url: str, events: int) -> list[PreferencePair]:
    """Wait for ``events`` in the stream, file them as the sync does, and gather the pairs."""
    deadline = time.monotonic() + 20
    while redis.Redis.from_url(redis_url).xlen("hhh:events") < events:
        assert time.monotonic() < deadline, "the events never reached Redis"
        await asyncio.sleep(0.05)
    client = redis_client(redis_url)
    try:
        store = FeedbackStore(client)
        collector = EventCollector(client, store, "hhh:events", settle_s=0.0)
        await collector.ensure_group()
        while await collector.collect():
            pass
        return (await gather(store, ExportOptions(test_fraction=0.0))).pairs
    finally:
        await client.aclose()


def _prompt(pair: PreferencePair) -> str:
    return str(pair.request["messages"][-1]["content"])


async def test_feedback_from_another_tenant_never_reaches_the_owners_export(
    gateway: Callable[[str], Client], redis_url: str
) -> None:
    answer = await _chat(gateway("t1"), "t1's question", "t1-request")
    # t2 names t1's completion by both ids a client can know, and an id that exists nowhere.
    foreign = [
        await _feedback(gateway("t2"), "t1-request", 1, "mallory"),
        await _feedback(gateway("t2"), answer["id"], 1, "mallory"),
    ]
    unknown = await _feedback(gateway("t2"), "no-such-completion", 1, "mallory")
    # Accepted alike: the answer does not tell whether the id exists for another tenant.
    assert {tuple(sorted(f)) for f in foreign} == {tuple(sorted(unknown))}
    assert {f["status"] for f in foreign} == {unknown["status"]}
    await _feedback(gateway("t1"), "t1-request", 0, "alice")

    pairs = await _export(redis_url, events=5)

    assert {(p.comparison.annotator, _prompt(p), p.chosen.text) for p in pairs} == {
        ("alice", "t1's question", "t1's question / answer 0")
    }


async def test_same_x_request_id_from_two_tenants_keeps_both_candidate_sets(
    gateway: Callable[[str], Client], redis_url: str
) -> None:
    await _chat(gateway("t1"), "t1's question", "shared-id")
    await _chat(gateway("t2"), "t2's question", "shared-id")
    await _feedback(gateway("t1"), "shared-id", 0, "alice")
    await _feedback(gateway("t2"), "shared-id", 1, "bob")

    pairs = await _export(redis_url, events=4)

    assert {(p.comparison.annotator, _prompt(p), p.chosen.text) for p in pairs} == {
        ("alice", "t1's question", "t1's question / answer 0"),
        ("bob", "t2's question", "t2's question / answer 1"),
    }
