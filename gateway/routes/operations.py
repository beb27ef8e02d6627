"""Liveness, readiness and Prometheus metrics, for orchestrators and scrapers.

/health and /ready need no key. /metrics needs what ``server.operations.metrics_auth`` says (default:
nothing). /ready answers from a probe of the upstreams at most ``ready_cache_s`` old.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.metrics import GatewayMetrics
from gateway.openapi.contract import contract
from gateway.relay.proxy import Proxy
from gateway.server.metrics_access import MetricsAccess
from gateway.server.readiness import Readiness


@get(
    "/health",
    summary="Liveness: the process serves (no key)",
    tags=["operations"],
    opt=contract(responses={200: "Health"}, security=None),
)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/ready",
    summary="Readiness: at least one upstream answers (no key)",
    tags=["operations"],
    opt=contract(responses={200: "Readiness", 503: "Readiness"}, security=None),
)
async def ready(proxy: Proxy, readiness: Readiness) -> Response[dict[str, Any]]:
    """Ready while at least one upstream answers; each upstream's state is listed."""
    upstreams = await readiness.upstreams(proxy.pool.reachability)
    reachable = sum(state == "ok" for state in upstreams.values())
    status = "ready" if reachable == len(upstreams) else "degraded" if reachable else "unavailable"
    return Response({"status": status, "upstreams": upstreams}, status_code=200 if reachable else 503)


@get(
    "/metrics",
    media_type=CONTENT_TYPE_LATEST,
    summary="Prometheus metrics (open unless server.operations.metrics_auth is set)",
    tags=["operations"],
    opt=contract(responses={200: "Metrics"}, security=None, media_type="text/plain"),
)
async def metrics(
    request: Request[Any, Any, Any], gateway_metrics: GatewayMetrics, metrics_access: MetricsAccess
) -> bytes:
    metrics_access.check(request.headers.get("authorization"))
    # Rendering walks every series: in a thread, so a scrape never stalls the requests being served.
    return await asyncio.to_thread(gateway_metrics.render)
