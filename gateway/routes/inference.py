"""The OpenAI inference endpoints. A client that leaves before its answer begins cancels the work
(``gateway.server.disconnect``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.types import AnyCallable

from gateway.auth import Tenant
from gateway.context import context_of
from gateway.errors import GatewayError, InvalidRequest, ModelNotFound
from gateway.guarded.completion_service import CompletionService
from gateway.guarded.endpoints import CHAT, EMBEDDINGS, RESPONSES, TEXT, Endpoint
from gateway.guarded.request import prepare_request
from gateway.limits import LimitsSettings
from gateway.openapi.contract import INFERENCE_ERRORS, contract
from gateway.protocol import read_json_object
from gateway.rate_limit.middleware import RATE_LIMITED
from gateway.responses.native import (
    STATEFUL_RESPONSES,
    NativePresenter,
    NativeRelay,
    NotNative,
    served_natively,
    stored_response,
)
from gateway.responses.native_body import NativeBody
from gateway.responses.owners import ResponseOwners, TenantResponses
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
    request: Request[Any, Any, Any],
    completions: CompletionService,
    owner: TenantResponses,
    limits: LimitsSettings,
) -> Response[Any]:
    """A Responses request on the guarded chat path, relayed natively to an upstream that serves
    ``/v1/responses`` (``gateway.responses.native``), else translated into chat completions; its answer
    reshaped, and its errors naming the Responses parameters (``gateway.responses``)."""
    raw = await read_json_object(await request.body(), limits.max_json_depth)
    if await _native_upstream(completions, raw.get("model")):
        try:
            return await _serve_translated(request, raw, completions, owner, limits, native=True)
        except NotNative:  # it answered 404, before anything reached the client: translate
            pass
    return await _serve_translated(request, raw, completions, owner, limits, native=False)


async def _native_upstream(completions: CompletionService, model: Any) -> bool:
    if not isinstance(model, str):
        return False  # the translation says what is wrong with it
    try:
        upstream = await completions.proxy.pool.route(model)
    except ModelNotFound:
        return False  # the guarded path answers the 404
    return upstream.supports_responses


async def _serve_translated(
    request: Request[Any, Any, Any],
    raw: dict[str, Any],
    completions: CompletionService,
    owner: TenantResponses,
    limits: LimitsSettings,
    native: bool,
) -> Response[Any]:
    translated = translate_request(raw, limits, native=native)
    if native:  # before any guard runs or anything is sent: earlier turns must be the caller's own
        await owner.check_stateful(raw)
    chat = translated.chat
    try:  # the chat body's own bytes go upstream (or, native, are mapped back): the client's are Responses
        prepared = prepare_request(
            RESPONSES, chat, msgspec.json.encode(chat), owner.tenant, completions.guardrails, limits
        )
        if native and prepared.policy.policy.best_of_n is not None:  # best-of-n samples chat completions
            return await _serve_translated(request, raw, completions, owner, limits, native=False)
        service: CompletionService = completions
        presenter: ResponsesPresenter = ResponsesPresenter(translated)
        if native:  # the relay binds the upstream's id to the tenant when it names it
            relay = NativeRelay(completions.proxy, NativeBody(raw, translated), translated, owner)
            service, presenter = served_natively(completions, relay), NativePresenter(translated, relay)
            if translated.stateful:
                prepared = msgspec.structs.replace(prepared, endpoint=STATEFUL_RESPONSES)
        prepared = msgspec.structs.replace(prepared, presenter=presenter)
        served = service.serve(context_of(request.scope), prepared)
        answer = await cancel_on_disconnect(request.receive, served)
    except GatewayError as exc:
        raise client_error(exc, translated) from None
    if not native:  # so that GET on it says why nothing is kept, to its tenant only
        await owner.bind(presenter.completion_id)
    return answer


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
    "Create a model response (the Responses API), guarded: relayed natively or through chat completions",
    "ResponseCreateRequest",
    "Response",
    streams=True,
)
async def responses(
    request: Request[Any, Any, Any],
    completions: CompletionService,
    tenant: Tenant,
    limits: LimitsSettings,
    response_owners: ResponseOwners | None,
) -> Response[Any]:
    owner = TenantResponses(response_owners, tenant.name)
    return await _serve_responses(request, completions, owner, limits)


@get(
    "/v1/responses/{response_id:str}",
    summary="Retrieve a stored response from an upstream with its own /v1/responses; its output guarded",
    tags=["inference"],
    opt={RATE_LIMITED: True} | contract(responses={200: "Response"}, errors=INFERENCE_ERRORS),
)
async def retrieve_response(
    request: Request[Any, Any, Any],
    response_id: str,
    completions: CompletionService,
    tenant: Tenant,
    response_owners: ResponseOwners | None,
) -> Response[Any]:
    owner = TenantResponses(response_owners, tenant.name)
    return await _stored(request, response_id, completions, owner, cancel=False)


@post(
    "/v1/responses/{response_id:str}/cancel",
    status_code=200,
    summary="Cancel a background response on an upstream with its own /v1/responses; its output guarded",
    tags=["inference"],
    opt={RATE_LIMITED: True} | contract(responses={200: "Response"}, errors=INFERENCE_ERRORS),
)
async def cancel_response(
    request: Request[Any, Any, Any],
    response_id: str,
    completions: CompletionService,
    tenant: Tenant,
    response_owners: ResponseOwners | None,
) -> Response[Any]:
    owner = TenantResponses(response_owners, tenant.name)
    return await _stored(request, response_id, completions, owner, cancel=True)


async def _stored(
    request: Request[Any, Any, Any],
    response_id: str,
    completions: CompletionService,
    owner: TenantResponses,
    cancel: bool,
) -> Response[Any]:
    """Only the tenant that made a response reaches it (``gateway.responses.owners``); the upstream is
    the one it was made on."""
    if request.query_params.get("stream") not in (None, "false"):
        raise InvalidRequest(
            "Streaming a stored response again is not relayed; leave out 'stream'.", param="stream"
        )
    model = request.query_params.get("model")
    context = context_of(request.scope)
    found = await stored_response(completions, context, owner, response_id, model, cancel)
    return Response(msgspec.json.encode(found), media_type="application/json", status_code=200)


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
