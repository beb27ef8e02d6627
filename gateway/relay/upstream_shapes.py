"""The shapes the relay trusts an upstream's answers to have, checked once where they are decoded.

Every later stage (output guards, fan-out merging, usage tallies, the event assembler) reads chunks and
completions as plain dicts. A field of the wrong type there (``"delta": "oops"``, ``"choices": [42]``)
would crash that stage mid-response; checked here, a wrong shape is an upstream failure like any other.

Only the fields the gateway reads are checked; anything else passes through as the upstream sent it.

>>> check_chunk({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})
>>> check_chunk({"choices": [{"index": 0, "delta": "oops"}]})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
gateway.errors.UpstreamStreamBroken: ... Expected `object | null`, got `str` - at `$.choices[0].delta`
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from gateway.errors import UpstreamBadResponse, UpstreamStreamBroken

_Index = Annotated[int, msgspec.Meta(ge=0)]


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    index: _Index = 0
    id: str | None = None
    type: str | None = None
    function: _Function | None = None


class _Logprobs(msgspec.Struct):
    # Chat's token lists; legacy completions' fields (tokens, token_logprobs, ...) pass unchecked.
    content: list[dict[str, Any]] | None = None
    refusal: list[dict[str, Any]] | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class _Message(msgspec.Struct):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_ToolCall] | None = None
    function_call: _Function | None = None


class _StreamChoice(msgspec.Struct):
    index: _Index = 0
    delta: _Message | None = None
    text: str | None = None  # legacy completions
    finish_reason: str | None = None
    logprobs: _Logprobs | None = None


class _Chunk(msgspec.Struct):
    choices: list[_StreamChoice] | None = None
    usage: _Usage | None = None


class _Choice(msgspec.Struct):
    index: _Index = 0
    message: _Message | None = None
    text: str | None = None  # legacy completions
    finish_reason: str | None = None
    logprobs: _Logprobs | None = None


class _Completion(msgspec.Struct):
    choices: list[_Choice]
    usage: _Usage | None = None


def _problem(value: Any, shape: type[msgspec.Struct]) -> str | None:
    try:
        msgspec.convert(value, shape)
    except msgspec.ValidationError as exc:
        return str(exc)
    return None


def check_chunk(chunk: dict[str, Any]) -> None:
    """A decoded stream chunk (already known to be a JSON object); raises ``UpstreamStreamBroken``."""
    problem = _problem(chunk, _Chunk)
    if problem is not None:
        raise UpstreamStreamBroken(f"The upstream sent a stream chunk of the wrong shape: {problem}")


def decode_answer(content: bytes, completion: bool) -> dict[str, Any]:
    """A non-streaming answer's body → a JSON object; ``completion`` also checks the choices.

    >>> decode_answer(b'[1, 2]', completion=False)
    Traceback (most recent call last):
    ...
    gateway.errors.UpstreamBadResponse: The upstream answered 200 with a body that is not a JSON object.
    """
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError:
        raise UpstreamBadResponse("The upstream answered 200 with a body that is not valid JSON.") from None
    if not isinstance(body, dict):
        raise UpstreamBadResponse("The upstream answered 200 with a body that is not a JSON object.")
    problem = _problem(body, _Completion) if completion else None
    if problem is not None:
        raise UpstreamBadResponse(
            f"The upstream answered 200 with a completion of the wrong shape: {problem}"
        )
    return body
