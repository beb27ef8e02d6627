"""One call to a safety classifier behind an OpenAI-compatible endpoint (vLLM, TGI, llama.cpp), over a
pooled httpx client: the answer's text and, when the server gives them, the first token's top log
probabilities. Failures raise ``SafetyCallFailed`` with a kind for the metrics and a reason for the report.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import msgspec

from guards.safety_llm_templates import Api

MAX_ANSWER_BYTES = 256 * 1024  # max_tokens bounds a sane answer far below this
TOP_LOGPROBS = 5


class SafetyCallFailed(Exception):
    """``kind``: timeout, connect, http_status, bad_response (the metric's outcome)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class Answer(msgspec.Struct, frozen=True):
    text: str
    top_logprobs: dict[str, float] | None


def request_body(
    api: Api,
    model: str,
    content: list[dict[str, str]] | str,
    max_tokens: int,
    logprobs: bool,
    chat_template_kwargs: dict[str, object] | None = None,
) -> dict[str, Any]:
    """The request: greedy (a classifier's answer must not be a draw), short, logprobs when asked."""
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": 0.0, "stream": False}
    if api == "chat":
        body["messages"] = content
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = TOP_LOGPROBS
        if chat_template_kwargs:
            body["chat_template_kwargs"] = chat_template_kwargs
    else:
        body["prompt"] = content
        if logprobs:
            body["logprobs"] = TOP_LOGPROBS
    return body


async def ask(client: httpx.AsyncClient, api: Api, body: dict[str, Any]) -> Answer:
    path = "chat/completions" if api == "chat" else "completions"
    try:
        async with client.stream("POST", path, json=body) as response:
            raw = bytearray()
            async for piece in response.aiter_bytes():
                raw += piece
                if len(raw) > MAX_ANSWER_BYTES:
                    raise SafetyCallFailed("bad_response", f"answer over {MAX_ANSWER_BYTES} bytes")
            status = response.status_code
    except httpx.TimeoutException:
        raise SafetyCallFailed("timeout", "the safety model did not answer in time") from None
    except httpx.TransportError as exc:
        raise SafetyCallFailed("connect", f"cannot reach the safety model: {type(exc).__name__}") from None
    if status != 200:
        raise SafetyCallFailed("http_status", f"the safety model answered HTTP {status}: {_excerpt(raw)}")
    try:
        decoded = msgspec.json.decode(bytes(raw))
    except msgspec.DecodeError:
        raise SafetyCallFailed(
            "bad_response", f"the safety model's answer is not JSON: {_excerpt(raw)}"
        ) from None
    return read_answer(api, decoded)


def read_answer(api: Api, body: Any) -> Answer:
    """The first choice's text and first-token log probabilities, from either API's shape.

    >>> read_answer("chat", {"choices": [{"message": {"content": "safe"}}]})
    Answer(text='safe', top_logprobs=None)
    >>> read_answer("completions", {"choices": [{"text": "Yes", "logprobs": {"top_logprobs": [{"No": -3}]}}]})
    Answer(text='Yes', top_logprobs={'No': -3.0})
    """
    choices = body.get("choices") if isinstance(body, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    if choice is None:
        raise SafetyCallFailed("bad_response", "the safety model's answer has no choices")
    if api == "chat":
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
    else:
        text = choice.get("text")
    if not isinstance(text, str):
        raise SafetyCallFailed("bad_response", "the safety model's answer has no text")
    return Answer(text, _top_logprobs(api, choice.get("logprobs")))


def _top_logprobs(api: Api, logprobs: Any) -> dict[str, float] | None:
    """Chat: ``content[0].top_logprobs`` is a list of ``{token, logprob}``; completions:
    ``top_logprobs[0]`` maps token to log probability. Anything else: none."""
    if not isinstance(logprobs, dict):
        return None
    top: dict[str, float] = {}
    if api == "chat":
        content = logprobs.get("content")
        first = content[0] if isinstance(content, list) and content and isinstance(content[0], dict) else {}
        for item in first.get("top_logprobs") or ():
            if isinstance(item, dict) and isinstance(item.get("token"), str):
                _keep(top, item["token"], item.get("logprob"))
    else:
        tops = logprobs.get("top_logprobs")
        first = tops[0] if isinstance(tops, list) and tops and isinstance(tops[0], dict) else {}
        for token, value in first.items():
            _keep(top, token, value)
    return top or None


def _keep(top: dict[str, float], token: str, value: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        top[token] = max(float(value), top.get(token, -math.inf))


def _excerpt(raw: bytes | bytearray) -> str:
    text = bytes(raw[:200]).decode("utf-8", "replace").replace("\n", " ")
    return repr(text + ("..." if len(raw) > 200 else ""))
