"""Which tenant made which response: response ids bound to tenants in Redis.

A native upstream keeps every response it made under one upstream key (the gateway's), so to the upstream
every tenant is the same caller. Without a record here a response id would be a capability: any key holder
who learnt one could read it (``GET``), cancel it, or continue it (``previous_response_id``). So every
response made through the gateway is bound to its tenant when the upstream names it, before the client sees
the id, and ``GET``, ``cancel`` and ``previous_response_id`` are refused for any id not bound to the caller,
with the same 404 as an id that does not exist (``ResponseNotFound``): nobody can probe which ids exist.

A ``conversation`` (the upstream's, made outside the gateway, which does not serve ``/v1/conversations``)
is claimed by the first tenant that sends it; another tenant's use of it is refused the same way.

Keys are ``hhh:responses:owner:<id>`` and ``hhh:responses:conversation:<id>``, each with the TTL
``responses.owner_ttl_s`` (30 days by default: how long OpenAI keeps a stored response). A binding is only
ever written with NX: an id, once bound, never changes tenant.

Fail mode when Redis fails: a read (is this id the caller's?) **fails closed** with 503
``response_store_unavailable``, whatever the id, so neither another tenant's id nor its existence leaks; a
write (binding a new id) is logged and counted in ``hhh_response_owner_errors``, and the answer is served:
the upstream has already made the response, and the client keeps its answer, but the id stays unbound, so
the gateway refuses it later like an unknown one. After a failure Redis is not asked again for a second
(reads refused, writes skipped, both counted), so a Redis that hangs costs one timeout, not one per call.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import msgspec
import redis.asyncio
import redis.exceptions
from prometheus_client import CollectorRegistry, Counter

from gateway.errors import GatewayError, InvalidRequest, ResponseNotFound, ResponseStoreUnavailable

log = logging.getLogger("hhh.responses")

PREFIX = "hhh:responses"
# What an id may look like (it goes into a Redis key and the upstream's URL path): anything else is unknown.
_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")
_FAILURES = (redis.exceptions.RedisError, OSError, TimeoutError)
# After a Redis failure the bindings do not ask Redis again for this long (reads are refused, writes
# skipped, both counted): a Redis that hangs would otherwise cost every Responses call the whole timeout.
_BACKOFF_S = 1.0


class _RedisAway(Exception):
    """Inside the backoff after a failure: Redis is not asked."""


class Binding(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    # The native upstream that keeps the response; empty for one served through the translation to chat
    # completions, of which nothing is kept anywhere.
    upstream: str = ""


class OwnerMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.errors = Counter(
            "hhh_response_owner_errors",
            "Redis failures of the response-id bindings, by operation: bind (served, id left unbound), "
            "read (refused with 503).",
            ["operation"],
            registry=registry,
        )


def well_formed(response_id: str) -> bool:
    return _ID.fullmatch(response_id) is not None


class ResponseOwners:
    """The bindings in Redis. ``client`` is the gateway's Redis client (the recorder's, or one opened on
    ``redis.url``): it fails fast and never retries (``feedback.redis_connection``)."""

    def __init__(self, client: redis.asyncio.Redis, ttl_s: float, metrics: OwnerMetrics) -> None:
        self.client = client
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.metrics = metrics
        self._skip_redis_until = 0.0

    def _check_backoff(self) -> None:
        if time.monotonic() < self._skip_redis_until:
            raise _RedisAway("Redis failed less than a second ago")

    def _failed(self) -> None:
        self._skip_redis_until = time.monotonic() + _BACKOFF_S

    async def bind(self, response_id: str, binding: Binding) -> bool:
        """Bind a new id to its tenant; False (logged, counted) when Redis failed: the id stays unbound."""
        if not well_formed(response_id):
            log.warning("not binding a malformed response id from the upstream (%d chars)", len(response_id))
            return False
        try:
            self._check_backoff()
            written = await self.client.set(
                _owner_key(response_id), msgspec.json.encode(binding), px=self.ttl_ms, nx=True
            )
        except (*_FAILURES, _RedisAway) as exc:
            if not isinstance(exc, _RedisAway):
                self._failed()
            self.metrics.errors.labels("bind").inc()
            log.error(
                "could not bind response %s to tenant %r (Redis: %s); it is served, but this gateway "
                "will refuse it later like an unknown id",
                response_id,
                binding.tenant,
                exc,
            )
            return False
        if not written:  # an upstream reusing an id: the first binding stands
            log.warning("response id %s was already bound; its first tenant keeps it", response_id)
        return bool(written)

    async def owned(self, response_id: str, tenant: str, param: str = "response_id") -> Binding:
        """The binding of an id the caller owns; ``ResponseNotFound`` for any other id (another tenant's,
        unknown, malformed), ``ResponseStoreUnavailable`` when Redis cannot say."""
        if not well_formed(response_id):
            raise ResponseNotFound(param)
        try:
            self._check_backoff()
            raw = await self.client.get(_owner_key(response_id))
        except (*_FAILURES, _RedisAway) as exc:
            raise self._unavailable(exc) from None
        binding = _decoded(raw)
        if binding is None or binding.tenant != tenant:
            raise ResponseNotFound(param)
        return binding

    async def claim_conversation(self, conversation_id: str, tenant: str, param: str) -> None:
        """The caller's use of a conversation: claimed if no tenant has used it through the gateway,
        refused (``ResponseNotFound``) if another has. Each use renews the claim's TTL."""
        if not well_formed(conversation_id):
            raise ResponseNotFound(param)
        key = f"{PREFIX}:conversation:{conversation_id}"
        value = msgspec.json.encode(Binding(tenant=tenant))
        try:
            self._check_backoff()
            if not await self.client.set(key, value, px=self.ttl_ms, nx=True):
                # An existing claim's tenant never changes (only NX writes it): reading it after is safe.
                claim = _decoded(await self.client.get(key))
                if claim is None or claim.tenant != tenant:
                    raise ResponseNotFound(param)
                await self.client.pexpire(key, self.ttl_ms)
        except (*_FAILURES, _RedisAway) as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> GatewayError:
        if not isinstance(exc, _RedisAway):
            self._failed()
        self.metrics.errors.labels("read").inc()
        log.error("response-id bindings unreadable (Redis: %s): refusing, fail closed", exc)
        return ResponseStoreUnavailable()


class TenantResponses:
    """One request's side of the bindings: its tenant, and the bindings (None: no upstream keeps
    responses, so there is nothing to bind or check)."""

    def __init__(self, owners: ResponseOwners | None, tenant: str) -> None:
        self.owners = owners
        self.tenant = tenant

    async def bind(self, response_id: Any, upstream: str = "") -> None:
        if self.owners is not None and isinstance(response_id, str) and response_id:
            await self.owners.bind(response_id, Binding(tenant=self.tenant, upstream=upstream))

    async def owned(self, response_id: str, param: str = "response_id") -> Binding:
        if self.owners is None:  # fail closed: no record, no access
            raise ResponseNotFound(param)
        return await self.owners.owned(response_id, self.tenant, param)

    async def check_stateful(self, raw: dict[str, Any]) -> None:
        """A native request's ``previous_response_id`` and ``conversation`` are the caller's own, or it is
        refused before anything is judged or sent."""
        previous = raw.get("previous_response_id")
        if isinstance(previous, str):
            binding = await self.owned(previous, "previous_response_id")
            if not binding.upstream:
                raise InvalidRequest(
                    "The response in 'previous_response_id' was served through chat completions, which "
                    "store nothing; send the whole conversation in 'input'.",
                    param="previous_response_id",
                )
        conversation = raw.get("conversation")
        param = "conversation"
        if isinstance(conversation, dict):
            conversation, param = conversation.get("id"), "conversation.id"
        if isinstance(conversation, str):
            if self.owners is None:
                raise ResponseNotFound(param)
            await self.owners.claim_conversation(conversation, self.tenant, param)


def _owner_key(response_id: str) -> str:
    return f"{PREFIX}:owner:{response_id}"


def _decoded(raw: bytes | str | None) -> Binding | None:
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=Binding)
    except msgspec.DecodeError:  # not written by this gateway: owned by nobody
        return None
