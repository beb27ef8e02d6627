"""Liveness, readiness and Prometheus metrics: unauthenticated, for orchestrators and scrapers."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.api_contract import contract
from gateway.metrics import GatewayMetrics
from gateway.proxy import Proxy


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
async def ready(proxy: Proxy) -> Response[dict[str, Any]]:
    """Ready while at least one upstream answers; each upstream's state is listed."""
    upstreams = await proxy.pool.reachability()
    reachable = sum(state == "ok" for state in upstreams.values())
    status = "ready" if reachable == len(upstreams) else "degraded" if reachable else "unavailable"
    return Response({"status": status, "upstreams": upstreams}, status_code=200 if reachable else 503)


@get(
    "/metrics",
    media_type=CONTENT_TYPE_LATEST,
    summary="Prometheus metrics (no key)",
    tags=["operations"],
    opt=contract(responses={200: "Metrics"}, security=None, media_type="text/plain"),
)
async def metrics(gateway_metrics: GatewayMetrics) -> bytes:
    return gateway_metrics.render()
