"""Threat: one tenant reads, cancels or continues another tenant's response by its id.

A native upstream (``supports_responses``) keeps every response under the gateway's one upstream key, so to
it all tenants are one caller. The gateway binds each response id to the tenant that made it, in a real
Redis here, and refuses every other id (another tenant's, or one it never made) with the same 404, so ids
can neither be used nor probed. When Redis cannot say whose an id is, reads fail closed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.settings import (
    ApiKey,
    AuthSettings,
    RedisSettings,
    ResponsesSettings,
    Settings,
    UpstreamSettings,
)
from guards.policy import Policy, PolicyBook
from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_server import redis_server
from tests.support.responses_upstream import NATIVE_MODELS, ResponsesScript, native_transport

KEYS = {"owner": "key-of-the-owner", "other": "key-of-another-tenant"}
TTL_S = 7 * 24 * 3600.0


class Tenants:
    def __init__(
        self, client: AsyncTestClient[Any], script: ResponsesScript, redis_url: str, stop_redis: ExitStack
    ) -> None:
        self.client = client
        self.script = script
        self.redis = redis.Redis.from_url(redis_url)
        self.stop_redis = stop_redis

    def _as(self, tenant: str) -> dict[str, str]:
        return {"authorization": f"Bearer {KEYS[tenant]}"}

    async def create(self, tenant: str, model: str = "native", **body: Any) -> Any:
        return await self.client.post(
            "/v1/responses", json={"model": model, "input": "Hello there.", **body}, headers=self._as(tenant)
        )

    async def made(self, tenant: str, model: str = "native", **body: Any) -> str:
        answer = await self.create(tenant, model, **body)
        assert answer.status_code == 200, answer.text
        made: str = answer.json()["id"]
        return made

    async def get(self, tenant: str, response_id: str) -> Any:
        return await self.client.get(f"/v1/responses/{response_id}", headers=self._as(tenant))

    async def cancel(self, tenant: str, response_id: str) -> Any:
        return await self.client.post(f"/v1/responses/{response_id}/cancel", headers=self._as(tenant))


@pytest.fixture
async def tenants(tmp_path: Path) -> AsyncIterator[Tenants]:
    with ExitStack() as stop_redis:
        redis_url = stop_redis.enter_context(redis_server(tmp_path))
        script, chat = ResponsesScript(), FakeUpstream()
        settings = Settings(
            data_dir=str(tmp_path / "data"),
            guards={},
            policies=PolicyBook(default=Policy()),
            upstreams=[
                UpstreamSettings(
                    name="native", url="http://native.test/v1", models=NATIVE_MODELS, supports_responses=True
                ),
                UpstreamSettings(name="fake", url="http://fake.test/v1", models=["echo"]),
            ],
            auth=AuthSettings(keys=[ApiKey(tenant=t, sha256=hash_key(k)) for t, k in KEYS.items()]),
            redis=RedisSettings(url=redis_url),
            responses=ResponsesSettings(owner_ttl_s=TTL_S),
        )
        app = create_app(settings, upstream_transport=native_transport(script, chat), guards={})
        async with AsyncTestClient(app) as client:
            yield Tenants(client, script, redis_url, stop_redis)


def _refusal(answer: Any) -> dict[str, Any]:
    assert answer.status_code == 404, answer.text
    error: dict[str, Any] = answer.json()["error"]
    return error


async def test_another_tenants_response_cannot_be_retrieved_and_reads_like_an_unknown_id(
    tenants: Tenants,
) -> None:
    made = await tenants.made("owner")
    theirs = _refusal(await tenants.get("other", made))
    unknown = _refusal(await tenants.get("other", "resp_up" + "0" * 32))
    assert theirs == unknown  # the same words: an id's existence cannot be probed
    assert theirs["code"] == "not_found"
    assert theirs["type"] == "invalid_request_error"
    assert theirs["param"] == "response_id"
    assert "Hello there" not in str(theirs)
    assert (await tenants.get("owner", made)).status_code == 200


async def test_another_tenants_response_cannot_be_cancelled(tenants: Tenants) -> None:
    made = await tenants.made("owner", background=True)
    assert _refusal(await tenants.cancel("other", made)) == _refusal(
        await tenants.cancel("other", "resp_nothing_here")
    )
    assert tenants.script.stored[made]["status"] == "completed"  # the upstream was never asked
    cancelled = await tenants.cancel("owner", made)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"


async def test_another_tenants_response_cannot_be_continued_with_previous_response_id(
    tenants: Tenants,
) -> None:
    made = await tenants.made("owner", input="My secret plan is to sail at dawn.")
    asked = len(tenants.script.bodies)
    theirs = await tenants.create("other", input="What was my plan?", previous_response_id=made)
    unknown = await tenants.create("other", input="What was my plan?", previous_response_id="resp_guess")
    assert _refusal(theirs) == _refusal(unknown)
    assert _refusal(theirs)["param"] == "previous_response_id"
    assert len(tenants.script.bodies) == asked  # nothing reached the upstream
    continued = await tenants.create("owner", input="What was my plan?", previous_response_id=made)
    assert continued.status_code == 200, continued.text
    assert tenants.script.bodies[-1]["previous_response_id"] == made


async def test_a_streamed_response_is_bound_to_its_tenant_too(tenants: Tenants) -> None:
    answer = await tenants.create("owner", stream=True)
    assert answer.status_code == 200
    created = next(line for line in answer.text.splitlines() if line.startswith("data: "))
    made = json.loads(created.removeprefix("data: "))["response"]["id"]
    assert made.startswith("resp_up")
    _refusal(await tenants.get("other", made))
    assert (await tenants.get("owner", made)).status_code == 200


async def test_another_tenants_conversation_cannot_be_joined(tenants: Tenants) -> None:
    first = await tenants.create("owner", conversation="conv_shared123")
    assert first.status_code == 200, first.text
    asked = len(tenants.script.bodies)
    joined = await tenants.create("other", conversation={"id": "conv_shared123"})
    assert _refusal(joined)["param"] == "conversation.id"
    assert len(tenants.script.bodies) == asked
    assert (await tenants.create("owner", conversation={"id": "conv_shared123"})).status_code == 200


async def test_path_tricks_and_oversized_ids_are_unknown_ids(tenants: Tenants) -> None:
    for response_id in ("..%2F..%2Fmodels", "resp_" + "a" * 300):
        _refusal(await tenants.get("owner", response_id))
    oversized = await tenants.create("owner", previous_response_id="resp_" + "a" * 5000)
    assert _refusal(oversized)["param"] == "previous_response_id"


async def test_a_translated_response_is_told_apart_only_to_its_owner(tenants: Tenants) -> None:
    made = await tenants.made("owner", model="echo")
    own = _refusal(await tenants.get("owner", made))
    assert "chat completions" in own["message"]  # a clear answer: nothing of it is stored
    assert _refusal(await tenants.get("other", made)) == _refusal(await tenants.get("other", "resp_x"))
    continued = await tenants.create("owner", previous_response_id=made)
    assert continued.status_code == 400
    assert continued.json()["error"]["param"] == "previous_response_id"


async def test_bindings_are_namespaced_and_expire(tenants: Tenants) -> None:
    made = await tenants.made("owner")
    key = f"hhh:responses:owner:{made}"
    ttl_ms = tenants.redis.pttl(key)
    assert 0 < ttl_ms <= TTL_S * 1000
    assert b'"tenant":"owner"' in (tenants.redis.get(key) or b"")


async def test_with_redis_down_reads_fail_closed_and_answers_are_still_served(tenants: Tenants) -> None:
    made = await tenants.made("owner")
    tenants.stop_redis.close()  # the real redis-server stops
    for answer in (
        await tenants.get("owner", made),
        await tenants.get("other", made),
        await tenants.cancel("other", made),
        await tenants.create("other", previous_response_id=made),
    ):
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "response_store_unavailable"
    served = await tenants.create("owner", input="Still served.")
    assert served.status_code == 200  # the id stays unbound: refused later like an unknown one
    assert served.json()["output"][0]["content"][0]["text"] == "Still served."
