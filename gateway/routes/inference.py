"""The OpenAI inference endpoints. A client that leaves before its answer begins cancels the work
(``gateway.server.disconnect``)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from gateway.auth import Tenant
from gateway.context import context_of
from gateway.guarded.completion_service import CompletionService
from gateway.guarded.sources import request_source_texts
from gateway.guarded.text_slots import chat_request_slots, embedding_input_slots, prompt_slots
from gateway.limits import LimitsSettings, check_input_budget, check_n
from gateway.openapi.contract import INFERENCE_ERRORS, contract
from gateway.protocol import (
    ContentPart,
    check_chat,
    check_completion,
    check_embedding,
    read_json_object,
)
from gateway.rate_limit.middleware import RATE_LIMITED
from gateway.relay.proxy import ForwardCall
from gateway.server.disconnect import cancel_on_disconnect


def _text_length(content: str | list[ContentPart] | None) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(part.text or "") for part in content)
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
    request: Request[Any, Any, Any], completions: CompletionService, tenant: Tenant, limits: LimitsSettings
) -> Response[Any]:
    body = await request.body()
    raw = await read_json_object(body, limits.max_json_depth)
    chat = check_chat(raw)
    check_n(chat.n, limits)
    texts = [slot.text for slot in chat_request_slots(raw)] + request_source_texts(raw)
    check_input_budget(texts, limits, "messages")
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
    request: Request[Any, Any, Any], completions: CompletionService, tenant: Tenant, limits: LimitsSettings
) -> Response[Any]:
    body = await request.body()
    raw = await read_json_object(body, limits.max_json_depth)
    completion = check_completion(raw)
    check_n(completion.n, limits)
    check_input_budget((slot.text for slot in prompt_slots(raw)), limits, "prompt")
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
    request: Request[Any, Any, Any], completions: CompletionService, tenant: Tenant, limits: LimitsSettings
) -> Response[Any]:
    body = await request.body()
    raw = await read_json_object(body, limits.max_json_depth)
    embedding = check_embedding(raw)
    check_input_budget((slot.text for slot in embedding_input_slots(raw)), limits, "input")
    call = ForwardCall(path="/embeddings", model=embedding.model, raw=raw, body=body)
    return await cancel_on_disconnect(
        request.receive, completions.embed(context_of(request.scope), tenant, call)
    )
