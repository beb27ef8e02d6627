"""Rate limits and budgets as data: per tenant (with a default), optionally per API key.

::

    rate_limits:
      default: {requests_per_minute: 600, tokens_per_minute: 200000, max_concurrent: 16}
      tenants:
        batch-jobs: {requests_per_minute: 60, max_concurrent: 4}
      on_redis_error: open

A tenant's entry replaces the default as a whole; a field left out is unlimited. Limits are shared by
every replica through Redis (``redis.url``, the same one events go to).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class RateLimit(_Strict):
    """One subject's limits (a tenant, or one API key); ``None`` is unlimited."""

    # Requests admitted per minute.
    requests_per_minute: int | None = None
    # Usage tokens (prompt + completion) as the upstream reports them, or as the gateway estimates them
    # for streams without usage. A request is admitted while any tokens are left in the window, and is
    # charged when it ends.
    tokens_per_minute: int | None = None
    # Requests in flight at once, streams included until their last byte.
    max_concurrent: int | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute", "max_concurrent"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be at least 1 (leave it out for no limit)")

    @property
    def is_empty(self) -> bool:
        return (
            self.requests_per_minute is None
            and self.tokens_per_minute is None
            and self.max_concurrent is None
        )


class RateLimitSettings(_Strict):
    # Applies to every tenant without an entry of its own, each tenant counted on its own.
    default: RateLimit = msgspec.field(default_factory=RateLimit)
    # Per tenant: limits that replace the default as a whole (a field left out is unlimited).
    tenants: dict[str, RateLimit] = {}
    # Redis unreachable or slow: "open" admits the request unlimited (logged, counted in
    # hhh_rate_limit_unavailable); "closed" refuses it with 503 rate_limiter_unavailable.
    on_redis_error: Literal["open", "closed"] = "open"
    # How long one Redis call of the limiter may take before the fail mode applies.
    redis_timeout_s: float = 0.5
    # A concurrency slot is renewed while its request runs; a replica that dies stops renewing, and its
    # slots expire after this long.
    slot_ttl_s: float = 30.0

    def __post_init__(self) -> None:
        if self.redis_timeout_s <= 0:
            raise ValueError("redis_timeout_s: must be above 0")
        if self.slot_ttl_s < 3:
            raise ValueError("slot_ttl_s: must be at least 3 (slots are renewed every third of it)")

    def limit_for(self, tenant: str) -> RateLimit:
        return self.tenants.get(tenant, self.default)

    def check_tenants(self, known: Iterable[str]) -> None:
        """A limit for a tenant no key belongs to is a typo; an open gateway's only tenant is anonymous."""
        names = set(known) or {"anonymous"}
        for tenant in self.tenants:
            if tenant not in names:
                raise ValueError(
                    f"rate_limits.tenants.{tenant}: no API key in auth.keys belongs to this tenant"
                )
