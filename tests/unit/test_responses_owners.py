"""The response-id bindings (``gateway.responses.owners``) on an in-memory Redis, and on one that fails:
reads fail closed, writes are skipped and counted, and a failing Redis is left alone for a second."""

from __future__ import annotations

from typing import Any, cast

import pytest
import redis.asyncio
import redis.exceptions
from prometheus_client import CollectorRegistry

from gateway.errors import InvalidRequest, ResponseNotFound, ResponseStoreUnavailable
from gateway.responses.owners import Binding, OwnerMetrics, ResponseOwners, TenantResponses
from tests.support.memory_redis import memory_owners


class FailingRedis:
    def __init__(self) -> None:
        self.calls = 0

    async def _fail(self, *_: Any, **__: Any) -> Any:
        self.calls += 1
        raise redis.exceptions.ConnectionError("connection refused")

    set = get = pexpire = _fail


def _failing() -> tuple[ResponseOwners, FailingRedis, CollectorRegistry]:
    failing, registry = FailingRedis(), CollectorRegistry()
    owners = ResponseOwners(cast(redis.asyncio.Redis, failing), 60.0, OwnerMetrics(registry))
    return owners, failing, registry


async def test_an_id_is_bound_once_with_the_ttl_and_its_first_tenant_keeps_it() -> None:
    owners, memory = memory_owners(ttl_s=90.0)
    assert await owners.bind("resp_1", Binding(tenant="a", upstream="native"))
    assert not await owners.bind("resp_1", Binding(tenant="b", upstream="native"))  # NX: no takeover
    assert memory.ttls_ms["hhh:responses:owner:resp_1"] == 90_000
    assert (await owners.owned("resp_1", "a")).upstream == "native"
    with pytest.raises(ResponseNotFound):
        await owners.owned("resp_1", "b")


async def test_another_tenants_malformed_and_unknown_ids_raise_the_same_error() -> None:
    owners, _ = memory_owners()
    await owners.bind("resp_1", Binding(tenant="a", upstream="native"))
    messages = set()
    for response_id in ("resp_1", "resp_2", "../../models", "r" * 257):
        with pytest.raises(ResponseNotFound) as refused:
            await owners.owned(response_id, "b")
        messages.add((refused.value.message, refused.value.param, refused.value.status_code))
    assert len(messages) == 1


async def test_a_conversation_is_claimed_by_its_first_tenant_only() -> None:
    owners, _ = memory_owners()
    await owners.claim_conversation("conv_1", "a", "conversation")
    await owners.claim_conversation("conv_1", "a", "conversation")  # its own again: fine
    with pytest.raises(ResponseNotFound) as refused:
        await owners.claim_conversation("conv_1", "b", "conversation.id")
    assert refused.value.param == "conversation.id"


async def test_previous_response_id_of_a_translated_response_is_a_400_for_its_owner() -> None:
    owners, _ = memory_owners()
    await owners.bind("resp_t", Binding(tenant="a"))
    with pytest.raises(InvalidRequest) as refused:
        await TenantResponses(owners, "a").check_stateful({"previous_response_id": "resp_t"})
    assert refused.value.status_code == 400
    with pytest.raises(ResponseNotFound):
        await TenantResponses(owners, "b").check_stateful({"previous_response_id": "resp_t"})


async def test_without_bindings_every_stateful_id_is_refused() -> None:
    for raw in ({"previous_response_id": "resp_1"}, {"conversation": {"id": "conv_1"}}):
        with pytest.raises(ResponseNotFound):
            await TenantResponses(None, "a").check_stateful(raw)


async def test_redis_down_fails_reads_closed_and_writes_are_counted_then_left_alone() -> None:
    owners, failing, registry = _failing()
    assert not await owners.bind("resp_1", Binding(tenant="a"))
    with pytest.raises(ResponseStoreUnavailable) as refused:
        await owners.owned("resp_1", "a")
    assert refused.value.status_code == 503
    with pytest.raises(ResponseStoreUnavailable):
        await owners.claim_conversation("conv_1", "a", "conversation")
    assert failing.calls == 1  # within the backoff, Redis is not asked again
    bind_errors = registry.get_sample_value("hhh_response_owner_errors_total", {"operation": "bind"})
    read_errors = registry.get_sample_value("hhh_response_owner_errors_total", {"operation": "read"})
    assert (bind_errors, read_errors) == (1.0, 2.0)
