"""Liveness, readiness and Prometheus metrics: unauthenticated, for orchestrators and scrapers."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.metrics import GatewayMetrics
from gateway.proxy import Proxy


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready")
async def ready(proxy: Proxy) -> Response[dict[str, Any]]:
    """Ready while at least one upstream answers; each upstream's state is listed."""
    upstreams = await proxy.pool.reachability()
    reachable = sum(state == "ok" for state in upstreams.values())
    status = "ready" if reachable == len(upstreams) else "degraded" if reachable else "unavailable"
    return Response({"status": status, "upstreams": upstreams}, status_code=200 if reachable else 503)


@get("/metrics", media_type=CONTENT_TYPE_LATEST)
async def metrics(gateway_metrics: GatewayMetrics) -> bytes:
    return gateway_metrics.render()
