"""How many tokens a request used, for the tokens-per-minute limits: the upstream's ``usage`` where it
sends one, else the gateway's estimate (``UsageTally``: about four characters a prompt token, one token a
streamed chunk). Kept on the request's context, so a stream that a client leaves early is still charged
for what it generated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from gateway.context import RequestContext
from gateway.relay.streaming import Chunk, UsageTally


class _Usage(msgspec.Struct):
    total_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _UsageOnly(msgspec.Struct):  # the rest of the answer is skipped, not decoded
    usage: _Usage | None = None


class _Choices(msgspec.Struct):
    choices: list[Any] = []


def _reported(usage: Any) -> int | None:
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int) and total >= 0:
        return total
    parts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    return sum(p for p in parts if isinstance(p, int) and p >= 0) if any(parts) else None


def meter_answer(context: RequestContext, content: bytes, prompt_chars: int) -> None:
    """A whole answer's tokens: its usage, or an estimate from the prompt and the answer's length."""
    try:
        usage = msgspec.json.decode(content, type=_UsageOnly).usage
        if usage is not None and (usage.total_tokens or usage.prompt_tokens or usage.completion_tokens):
            context.usage_tokens += usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
            return
        choices = msgspec.json.decode(content, type=_Choices).choices
    except (msgspec.DecodeError, msgspec.ValidationError):
        return  # not a completion the gateway can read; the relay reports that itself
    answer_chars = len(msgspec.json.encode(choices))  # the choices as JSON: a little over their text
    context.usage_tokens += _prompt_estimate(prompt_chars) + round(answer_chars / 4)


def _prompt_estimate(prompt_chars: int) -> int:
    return max(1, round(prompt_chars / 4))  # as UsageTally estimates it


async def meter_stream(
    chunks: AsyncIterator[Chunk], context: RequestContext, prompt_chars: int
) -> AsyncIterator[Chunk]:
    """Pass chunks on, keeping ``context.usage_tokens`` up to date as they go."""
    tally = UsageTally(prompt_chars)
    start = context.usage_tokens
    async for chunk in chunks:
        tally.observe(chunk)
        reported = _reported(chunk.get("usage"))
        if reported is not None:
            context.usage_tokens = start + reported
        elif not tally.seen_usage:
            context.usage_tokens = start + _prompt_estimate(prompt_chars) + tally.completion_tokens
        yield chunk
