"""One raw ASGI middleware for every served route: request id, the overhead header, request metrics.

It is plain ASGI rather than a framework hook because it must see the moment the response starts,
streamed or not, and it runs on every request, so it should cost microseconds.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.context import STATE_KEY, RequestContext, request_id_from
from gateway.metrics import GatewayMetrics

REQUEST_ID_HEADER = b"x-request-id"
OVERHEAD_HEADER = b"x-hhh-overhead-ms"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def request_observer(metrics: GatewayMetrics) -> type:
    """A middleware class bound to one app's metrics (Litestar builds it with ``app=``)."""

    class RequestObserver:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await self.app(scope, receive, send)
                return
            context = RequestContext(request_id_from(_header(scope, REQUEST_ID_HEADER)))
            scope.setdefault("state", {})[STATE_KEY] = context
            # The route's template (/v1/models/{model_id}), never the raw path: labels must stay bounded.
            route = scope.get("path_template") or "unmatched"

            async def observed_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    overhead = context.overhead_seconds()
                    message["headers"] = [
                        *message.get("headers", ()),
                        (REQUEST_ID_HEADER, context.request_id.encode()),
                        (OVERHEAD_HEADER, f"{overhead * 1000:.3f}".encode()),
                    ]
                    model = metrics.model_label(context.model)
                    metrics.requests.labels(route, model, str(message["status"])).inc()
                    metrics.request_duration.labels(route).observe(overhead + context.upstream_seconds)
                    metrics.overhead.labels(route).observe(overhead)
                await send(message)

            await self.app(scope, receive, observed_send)

    return RequestObserver
