"""Rate limits on the request path: which limits a request falls under, its admission, and the answer
when it is refused.

A raw ASGI middleware, because a slot must be held until the response's last byte (streams included)
and freed on every way out: success, error, and a client that leaves. Routes opt in with
``opt={RATE_LIMITED: True}``. Refusals are OpenAI's::

    429 {"error": {"message", "type": "requests" | "tokens", "param": null, "code": "rate_limit_exceeded"}}

with ``retry-after`` (seconds; ``retry-after-ms`` too, which the openai SDK reads first) and the
``x-ratelimit-*`` headers, which admitted responses carry as well. When Redis fails, ``on_redis_error``
decides: ``open`` admits unlimited (logged, counted), ``closed`` answers 503 ``rate_limiter_unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TypeVar

import anyio
import redis.asyncio
import redis.exceptions
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)
from prometheus_client import CollectorRegistry, Counter

from feedback.embedded_redis import EmbeddedRedis
from feedback.recorder import EventRecorder
from feedback.redis_connection import redis_client
from gateway.auth import KeyRing, Tenant
from gateway.context import STATE_KEY, RequestContext
from gateway.errors import AuthenticationFailed, GatewayError, RateLimiterUnavailable, encode_error
from gateway.rate_limit.limiter import Decision, RedisRateLimiter, Refusal, Subject, duration
from gateway.rate_limit.settings import RateLimit
from gateway.settings import Settings

log = logging.getLogger("hhh.ratelimit")

RATE_LIMITED = "rate_limited"  # the route opt that puts a route under the limits
# After a Redis failure the limiter does not ask Redis again for this long: a Redis that hangs would
# otherwise cost every request the whole timeout.
_BACKOFF_S = 1.0
_T = TypeVar("_T")


class RateLimited(GatewayError):
    status_code = 429
    default_code = "rate_limit_exceeded"

    def __init__(self, decision: Decision, refusal: Refusal) -> None:
        self.decision = decision
        self.retry_after_ms = refusal.retry_after_ms
        # OpenAI's type names what ran out; a concurrency limit is a limit on requests.
        self.error_type = "tokens" if refusal.kind == "tokens" else "requests"
        who = f"tenant '{refusal.subject.tenant}'"
        if refusal.subject.scope == "key":
            who = f"this API key of {who}"
        what = {
            "requests": "requests per minute",
            "tokens": "tokens per minute",
            "concurrency": "concurrent requests",
        }[refusal.kind]
        super().__init__(
            f"Rate limit reached for {who} on {what}: limit {refusal.limit}, used {math.ceil(refusal.used)}."
            f" Please try again in {duration(refusal.retry_after_ms)}."
        )


class RateLimitMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # Tenants are the configured ones (a request is counted only once its key is known): bounded.
        self.rejections = Counter(
            "hhh_rate_limit_rejections",
            "Requests refused with 429, by tenant and the limit that ran out: requests, tokens, concurrency.",
            ["tenant", "kind"],
            registry=registry,
        )
        self.unavailable = Counter(
            "hhh_rate_limit_unavailable",
            "Requests decided without Redis, by what the fail mode did (admitted, refused).",
            ["decision"],
            registry=registry,
        )


class RateLimits:
    """The configured limits, and the admission of one request against them."""

    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self.settings = settings.rate_limits
        self.key_limits = {k.sha256: k.rate_limits for k in settings.auth.keys if k.rate_limits is not None}
        limits = [self.settings.default, *self.settings.tenants.values(), *self.key_limits.values()]
        self.enabled = any(not limit.is_empty for limit in limits)
        self.metrics = RateLimitMetrics(registry)
        self.limiter: RedisRateLimiter | None = None
        self._running: dict[str, tuple[Subject, ...]] = {}  # slot → subjects, renewed while running
        self._skip_redis_until = 0.0

    def subjects(self, tenant: Tenant) -> tuple[Subject, ...]:
        found = []
        tenant_limit = self.settings.limit_for(tenant.name)
        if not tenant_limit.is_empty:
            found.append(Subject.of_tenant(tenant.name, tenant_limit))
        key_limit: RateLimit | None = self.key_limits.get(tenant.key_sha256)
        if key_limit is not None and not key_limit.is_empty:
            found.append(Subject.of_key(tenant.name, tenant.key_sha256, key_limit))
        return tuple(found)

    async def open(self, client: redis.asyncio.Redis, stack: AsyncExitStack) -> None:
        self.limiter = RedisRateLimiter(client, slot_ttl_s=self.settings.slot_ttl_s)
        renewing = asyncio.create_task(self._renew_forever(), name="rate-limit-slots")

        async def stop() -> None:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)

        stack.push_async_callback(stop)

    async def admit(self, subjects: tuple[Subject, ...]) -> Decision | None:
        """The decision; None when Redis failed and the fail mode is open. Raises RateLimited or
        RateLimiterUnavailable."""
        slot = uuid.uuid4().hex
        decision = await self._redis(lambda limiter: limiter.admit(subjects, slot))
        if decision is None:
            if self.settings.on_redis_error == "closed":
                self.metrics.unavailable.labels("refused").inc()
                raise RateLimiterUnavailable("Rate limits cannot be checked right now; try again shortly.")
            self.metrics.unavailable.labels("admitted").inc()
            return None
        if not decision.admitted:
            refusal = max(decision.refusals(), key=lambda r: r.retry_after_ms)
            self.metrics.rejections.labels(refusal.subject.tenant, refusal.kind).inc()
            raise RateLimited(decision, refusal)
        if any(subject.limit.max_concurrent for subject in subjects):
            self._running[slot] = subjects
        return decision

    async def finish(self, decision: Decision, tokens: int) -> None:
        self._running.pop(decision.slot, None)  # if Redis fails now, the slot expires on its own
        await self._redis(lambda limiter: limiter.finish(decision.subjects, decision.slot, tokens))

    async def _redis(self, call: Callable[[RedisRateLimiter], Awaitable[_T]]) -> _T | None:
        """One limiter call under the timeout; None (logged) when Redis fails or was failing just now."""
        if self.limiter is None or time.monotonic() < self._skip_redis_until:
            return None
        try:
            with anyio.fail_after(self.settings.redis_timeout_s):
                return await call(self.limiter)
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            self._skip_redis_until = time.monotonic() + _BACKOFF_S
            log.warning(
                "rate limits: Redis failed (%s); failing %s for %.0f s",
                type(exc).__name__,
                self.settings.on_redis_error,
                _BACKOFF_S,
            )
            return None

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.slot_ttl_s / 3)
            for slot, subjects in list(self._running.items()):
                await self._renew(slot, subjects)

    async def _renew(self, slot: str, subjects: tuple[Subject, ...]) -> None:
        await self._redis(lambda limiter: limiter.renew(subjects, slot))


@asynccontextmanager
async def open_rate_limits(
    rate_limits: RateLimits, settings: Settings, recorder: EventRecorder | None, data_dir: Path
) -> AsyncIterator[None]:
    """Connect the limits to the Redis events go to: ``redis.url``, else the embedded server the
    recorder started, else an embedded server of their own."""
    if not rate_limits.enabled:
        yield
        return
    async with AsyncExitStack() as stack:
        url = settings.redis.url
        if url is None and recorder is not None:
            client = recorder.client
        else:
            if url is None:
                url = (await stack.enter_async_context(EmbeddedRedis(data_dir / "redis"))).url
            client = redis_client(url, timeout_s=settings.rate_limits.redis_timeout_s)
            stack.push_async_callback(client.aclose)
        await rate_limits.open(client, stack)
        log.info("rate limits on (Redis; fail mode on Redis errors: %s)", settings.rate_limits.on_redis_error)
        yield


async def _send_error(send: Send, error: GatewayError, headers: dict[str, str]) -> None:
    body = encode_error(error)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": error.status_code,
        "headers": raw,
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


def _retry_headers(ms: int) -> dict[str, str]:
    return {"retry-after": str(max(1, math.ceil(ms / 1000))), "retry-after-ms": str(ms)}


class RateLimitMiddleware:
    """Admits each rate-limited request against its tenant's and key's limits, and holds its
    concurrency slot until the response's last byte."""

    def __init__(self, app: ASGIApp, rate_limits: RateLimits, keyring: KeyRing) -> None:
        self.app = app
        self.rate_limits = rate_limits
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        subjects = self._subjects(scope) if scope["type"] == ScopeType.HTTP else ()
        if not subjects:
            await self.app(scope, receive, send)
            return
        try:
            decision = await self.rate_limits.admit(subjects)
        except RateLimited as refused:
            headers = {**refused.decision.headers(), **_retry_headers(refused.retry_after_ms)}
            await _send_error(send, refused, headers)
            return
        except RateLimiterUnavailable as unavailable:
            await _send_error(send, unavailable, _retry_headers(1000))
            return
        if decision is None:  # Redis failed, fail mode open
            await self.app(scope, receive, send)
            return
        await self._run(decision, scope, receive, send)

    def _subjects(self, scope: Scope) -> tuple[Subject, ...]:
        handler = scope.get("route_handler")
        if not self.rate_limits.enabled or handler is None or not handler.opt.get(RATE_LIMITED):
            return ()
        authorization = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None
        )
        try:
            tenant = self.keyring.authenticate(authorization)
        except AuthenticationFailed:
            return ()  # the route itself answers 401
        return self.rate_limits.subjects(tenant)

    async def _run(self, decision: Decision, scope: Scope, receive: Receive, send: Send) -> None:
        extra = [(k.encode(), v.encode()) for k, v in decision.headers().items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            context: RequestContext | None = scope.get("state", {}).get(STATE_KEY)
            tokens = context.usage_tokens if context is not None else 0
            # Shielded: a client that left cancels this task, and the slot must still be freed.
            with anyio.CancelScope(shield=True):
                await self.rate_limits.finish(decision, tokens)


def rate_limit_middleware(rate_limits: RateLimits, keyring: KeyRing) -> DefineMiddleware:
    """The middleware bound to one app's limits (Litestar builds it with ``app=``)."""
    return DefineMiddleware(RateLimitMiddleware, rate_limits=rate_limits, keyring=keyring)
