"""The OpenAI inference endpoints. A client that leaves before its answer begins cancels the work
(``gateway.server.disconnect``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.types import AnyCallable

from gateway.auth import Tenant
from gateway.context import context_of
from gateway.guarded.completion_service import CompletionService
from gateway.guarded.endpoints import CHAT, EMBEDDINGS, TEXT, Endpoint
from gateway.guarded.request import prepare_request
from gateway.limits import LimitsSettings
from gateway.openapi.contract import INFERENCE_ERRORS, contract
from gateway.protocol import read_json_object
from gateway.rate_limit.middleware import RATE_LIMITED
from gateway.server.disconnect import cancel_on_disconnect


async def _serve(
    request: Request[Any, Any, Any],
    endpoint: Endpoint,
    completions: CompletionService,
    tenant: Tenant,
    limits: LimitsSettings,
) -> Response[Any]:
    """Every inference route: read the body, prepare it once, serve it (cancelled if the client leaves)."""
    client_bytes = await request.body()
    raw = await read_json_object(client_bytes, limits.max_json_depth)
    prepared = prepare_request(endpoint, raw, client_bytes, tenant.name, completions.guardrails, limits)
    return await cancel_on_disconnect(request.receive, completions.serve(context_of(request.scope), prepared))


def _inference_route(
    path: str, summary: str, request: str, response: str, streams: bool = False
) -> Callable[[AnyCallable], HTTPRouteHandler]:
    """What every inference route declares: rate limited, and its published contract."""
    return post(
        path,
        status_code=200,
        summary=summary,
        tags=["inference"],
        opt={RATE_LIMITED: True}
        | contract(request=request, responses={200: response}, errors=INFERENCE_ERRORS, streams=streams),
    )


@_inference_route(
    "/v1/chat/completions",
    "Create a chat completion, guarded",
    "ChatCompletionRequest",
    "ChatCompletion",
    streams=True,
)
async def chat_completions(
    request: Request[Any, Any, Any], completions: CompletionService, tenant: Tenant, limits: LimitsSettings
) -> Response[Any]:
    return await _serve(request, CHAT, completions, tenant, limits)


@_inference_route(
    "/v1/completions",
    "Create a legacy text completion, guarded",
    "CompletionRequest",
    "TextCompletion",
    streams=True,
)
async def legacy_completions(
    request: Request[Any, Any, Any], completions: CompletionService, tenant: Tenant, limits: LimitsSettings
) -> Response[Any]:
    return await _serve(request, TEXT, completions, tenant, limits)


@_inference_route(
    "/v1/embeddings",
    "Create embeddings; the input guards judge the input first",
    "EmbeddingRequest",
    "EmbeddingList",
)
async def embeddings(
    request: Request[Any, Any, Any], completions: CompletionService, tenant: Tenant, limits: LimitsSettings
) -> Response[Any]:
    return await _serve(request, EMBEDDINGS, completions, tenant, limits)
