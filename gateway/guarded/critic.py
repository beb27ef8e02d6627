"""A critic model (the ``revise`` action), asked through the proxy like any routed model.

Exceptions: ``CriticFailed`` (the critic gave nothing usable, or its upstream failed).
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.relay.proxy import ForwardCall, Proxy

CRITIC_PATH = "/chat/completions"  # a critic is a chat model, whatever endpoint the answer came from


class CriticFailed(Exception):
    """The critic could not give a usable critique or revision; ``reason`` is for the report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Critic:
    """One critic model, asked through the proxy: a non-streamed chat completion per call."""

    def __init__(self, proxy: Proxy, context: RequestContext, model: str, max_tokens: int) -> None:
        self.proxy = proxy
        self.context = context
        self.model = model
        self.max_tokens = max_tokens

    async def ask(self, messages: list[dict[str, Any]]) -> str:
        body = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens, "stream": False}
        call = ForwardCall(path=CRITIC_PATH, model=self.model, body=msgspec.json.encode(body))
        own = RequestContext(self.context.request_id)  # the request's context keeps its own model
        try:
            answer = await self.proxy.complete(own, call)
        except GatewayError as exc:
            raise CriticFailed(f"the critic {self.model!r} failed: {exc.message}") from None
        finally:  # the critic's time and tokens are the request's cost
            self.context.upstream_seconds += own.upstream_seconds
            self.context.usage_tokens += own.usage_tokens
        text = reply_text(msgspec.json.decode(answer.content))
        if not text:
            raise CriticFailed(f"the critic {self.model!r} gave no usable answer")
        return text


def reply_text(body: Any) -> str:
    """The text of a chat completion's first choice, stripped; "" when it has none.

    >>> reply_text({"choices": [{"message": {"content": " Fine. "}}]})
    'Fine.'
    >>> reply_text({"error": "nope"})
    ''
    """
    choices = body.get("choices") if isinstance(body, dict) else None
    message = (choices[0].get("message") if choices and isinstance(choices[0], dict) else None) or {}
    content = message.get("content") if isinstance(message, dict) else None
    return content.strip() if isinstance(content, str) else ""
