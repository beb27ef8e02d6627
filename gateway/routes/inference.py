"""The OpenAI inference endpoints. A client that leaves before its answer begins cancels the work
(``gateway.server.disconnect``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.types import AnyCallable

from gateway.auth import Tenant
from gateway.context import context_of
from gateway.errors import GatewayError
from gateway.guarded.completion_service import CompletionService
from gateway.guarded.endpoints import CHAT, EMBEDDINGS, RESPONSES, TEXT, Endpoint
from gateway.guarded.request import prepare_request
from gateway.limits import LimitsSettings
from gateway.openapi.contract import INFERENCE_ERRORS, contract
from gateway.protocol import read_json_object
from gateway.rate_limit.middleware import RATE_LIMITED
from gateway.responses.presenter import ResponsesPresenter, client_error
from gateway.responses.request import translate_request
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


async def _serve_responses(
    request: Request[Any, Any, Any], completions: CompletionService, tenant: Tenant, limits: LimitsSettings
) -> Response[Any]:
    """A Responses request, translated into chat completions and served on the guarded chat path; its
    answer reshaped, and its errors naming the Responses parameters (``gateway.responses``)."""
    raw = await read_json_object(await request.body(), limits.max_json_depth)
    translated = translate_request(raw, limits)
    chat = translated.chat
    try:  # the chat body's own bytes go upstream: the client's are a Responses body
        prepared = prepare_request(
            RESPONSES, chat, msgspec.json.encode(chat), tenant.name, completions.guardrails, limits
        )
        prepared = msgspec.structs.replace(prepared, presenter=ResponsesPresenter(translated))
        served = completions.serve(context_of(request.scope), prepared)
        return await cancel_on_disconnect(request.receive, served)
    except GatewayError as exc:
        raise client_error(exc, translated) from None


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
    "/v1/responses",
    "Create a model response (the Responses API), guarded: served through chat completions",
    "ResponseCreateRequest",
    "Response",
    streams=True,
)
async def responses(
    request: Request[Any, Any, Any], completions: CompletionService, tenant: Tenant, limits: LimitsSettings
) -> Response[Any]:
    return await _serve_responses(request, completions, tenant, limits)


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
