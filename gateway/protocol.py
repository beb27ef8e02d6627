"""OpenAI wire types the gateway checks before it forwards a request.

Only the fields the gateway reads or must type-check are declared. The request is forwarded from the
client's own JSON, so every other field (``tools``, ``response_format``, ``logprobs``, ``seed``, …)
reaches the upstream untouched.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from gateway.errors import InvalidRequest
from gateway.limits import DEFAULT_MAX_JSON_DEPTH, check_body_depth, check_json_depth


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ContentPart(msgspec.Struct):
    """One part of a message's content; only ``text`` is read (other kinds pass through untouched)."""

    type: str | None = None
    text: str | None = None


class ChatMessage(msgspec.Struct):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class _Sampling(msgspec.Struct):
    model: str
    stream: bool = False
    n: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = []
    max_completion_tokens: int | None = None


class CompletionRequest(_Sampling):
    # str, or a list of str, of token ids, or of token-id lists (checked in check_completion).
    prompt: str | list[Any] | None = None


class EmbeddingRequest(msgspec.Struct):
    model: str
    input: str | list[Any]  # as CompletionRequest.prompt
    encoding_format: str | None = None
    dimensions: int | None = None


RequestT = TypeVar("RequestT", bound=msgspec.Struct)


async def read_json_object(body: bytes, max_depth: int) -> dict[str, Any]:
    """``decode_json_object``, with the depth check off the event loop for a big body."""
    await check_body_depth(body, max_depth)
    return decode_json_object(body, max_depth=None)


def decode_json_object(body: bytes, max_depth: int | None = DEFAULT_MAX_JSON_DEPTH) -> dict[str, Any]:
    if not body.strip():
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    if max_depth is not None:  # before decoding: deep nesting exhausts the decoder's recursion
        check_json_depth(body, max_depth)
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(decoded, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return decoded


def check(raw: dict[str, Any], request_type: type[RequestT]) -> RequestT:
    """Type-check ``raw`` against ``request_type``; errors name the parameter, as OpenAI's do."""
    try:
        return msgspec.convert(raw, request_type)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at `")
        param = where.rstrip("`").removeprefix("$").removeprefix(".") or None
        if not message:
            message, param = str(exc), None
        if message.startswith("Object missing required field"):
            field = message.rpartition("`")[0].rpartition("`")[2]
            param = f"{param}.{field}" if param else field
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param) from None
        raise InvalidRequest(
            f"Invalid value for '{param}': {message}." if param else message, param=param
        ) from None


def _check_text_or_tokens(value: str | list[Any], param: str) -> None:
    """OpenAI accepts a string, or a list of strings, of token ids, or of token-id lists."""
    if isinstance(value, str):
        return
    kinds = {type(item) for item in value}
    if kinds <= {str} or kinds <= {int}:
        return
    if kinds <= {list} and all(isinstance(token, int) for item in value for token in item):
        return
    raise InvalidRequest(
        f"Invalid value for '{param}': expected a string, or an array of strings, of token ids, "
        "or of token-id arrays.",
        param=param,
    )


def check_embedding(raw: dict[str, Any]) -> EmbeddingRequest:
    request = check(raw, EmbeddingRequest)
    _check_text_or_tokens(request.input, "input")
    return request


def check_chat(raw: dict[str, Any]) -> ChatCompletionRequest:
    request = check(raw, ChatCompletionRequest)
    if not request.messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    _check_counts(request)
    return request


def check_completion(raw: dict[str, Any]) -> CompletionRequest:
    request = check(raw, CompletionRequest)
    if request.prompt is None:
        raise InvalidRequest("Missing required parameter: 'prompt'.", param="prompt")
    _check_text_or_tokens(request.prompt, "prompt")
    _check_counts(request)
    return request


def _check_counts(request: _Sampling) -> None:
    if request.n is not None and request.n < 1:
        raise InvalidRequest("'n' must be at least 1.", param="n")
    if request.max_tokens is not None and request.max_tokens < 1:
        raise InvalidRequest("'max_tokens' must be at least 1.", param="max_tokens")
