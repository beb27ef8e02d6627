"""The OpenAI inference endpoints. A client that leaves before its answer begins cancels the work
(``gateway.disconnect``)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from gateway.api_contract import INFERENCE_ERRORS, contract
from gateway.auth import Tenant
from gateway.completion_service import CompletionService
from gateway.context import context_of
from gateway.disconnect import cancel_on_disconnect
from gateway.protocol import check_chat, check_completion, check_embedding, decode_json_object
from gateway.proxy import ForwardCall
from gateway.rate_limiting import RATE_LIMITED


def _text_length(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
    return 0


@post(
    "/v1/chat/completions",
    status_code=200,
    summary="Create a chat completion, guarded",
    tags=["inference"],
    opt={RATE_LIMITED: True}
    | contract(
        request="ChatCompletionRequest",
        responses={200: "ChatCompletion"},
        errors=INFERENCE_ERRORS,
        streams=True,
    ),
)
async def chat_completions(
    request: Request[Any, Any, Any], completions: CompletionService, tenant: Tenant
) -> Response[Any]:
    body = await request.body()
    raw = decode_json_object(body)
    chat = check_chat(raw)
    include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
    call = ForwardCall(
        path="/chat/completions",
        model=chat.model,
        raw=raw,
        body=body,
        stream=chat.stream,
        n=chat.n or 1,
        include_usage=include_usage,
        prompt_chars=sum(_text_length(m.content) for m in chat.messages),
    )
    return await cancel_on_disconnect(
        request.receive, completions.chat(context_of(request.scope), tenant, call)
    )


@post(
    "/v1/completions",
    status_code=200,
    summary="Create a legacy text completion, guarded",
    tags=["inference"],
    opt={RATE_LIMITED: True}
    | contract(
        request="CompletionRequest", responses={200: "TextCompletion"}, errors=INFERENCE_ERRORS, streams=True
    ),
)
async def legacy_completions(
    request: Request[Any, Any, Any], completions: CompletionService, tenant: Tenant
) -> Response[Any]:
    body = await request.body()
    raw = decode_json_object(body)
    completion = check_completion(raw)
    include_usage = bool(completion.stream_options and completion.stream_options.include_usage)
    prompt = completion.prompt
    call = ForwardCall(
        path="/completions",
        model=completion.model,
        raw=raw,
        body=body,
        stream=completion.stream,
        n=completion.n or 1,
        include_usage=include_usage,
        prompt_chars=len(prompt) if isinstance(prompt, str) else len(str(prompt)),
    )
    return await cancel_on_disconnect(
        request.receive, completions.text(context_of(request.scope), tenant, call)
    )


@post(
    "/v1/embeddings",
    status_code=200,
    summary="Create embeddings; the input guards judge the input first",
    tags=["inference"],
    opt={RATE_LIMITED: True}
    | contract(request="EmbeddingRequest", responses={200: "EmbeddingList"}, errors=INFERENCE_ERRORS),
)
async def embeddings(
    request: Request[Any, Any, Any], completions: CompletionService, tenant: Tenant
) -> Response[Any]:
    body = await request.body()
    raw = decode_json_object(body)
    embedding = check_embedding(raw)
    call = ForwardCall(path="/embeddings", model=embedding.model, raw=raw, body=body)
    return await cancel_on_disconnect(
        request.receive, completions.embed(context_of(request.scope), tenant, call)
    )
