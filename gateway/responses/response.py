"""A chat completion (as the guarded chat path answers it) → a Responses ``Response`` object.

Only choice 0 is translated: a Response has one output (a request with ``n`` was refused). The choice's
message becomes output items, in the order a Responses model writes them: its reasoning (a ``reasoning``
item), its text and refusal (one ``message`` item with ``output_text`` and ``refusal`` parts), then its
tool calls (``function_call`` items). ``finish_reason`` decides the status: ``length`` and
``content_filter`` (an output guard's block) make it ``incomplete``, with that reason; the rest
``completed``. The ``guardrails`` report rides on the Response as it rode on the completion.

``output_text`` is not on the wire: the SDKs compute it from ``output``.

The item and envelope builders are shared with the stream translation (``gateway.responses.stream``), so
a streamed Response ends as the same object a whole one is.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from feedback.messages import content_text
from gateway.responses.request import TranslatedRequest

# finish_reason → the Responses API's incomplete_details.reason
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    """A fresh id in OpenAI's style (``resp_…``, ``msg_…``, ``fc_…``, ``rs_…``, ``call_…``)."""
    return f"{prefix}_{uuid.uuid4().hex}"


def status_of(finish_reason: Any) -> tuple[str, dict[str, str] | None]:
    """A Response's status and ``incomplete_details`` for a chat choice's ``finish_reason``.

    >>> status_of("length"), status_of("stop"), status_of(None)
    (('incomplete', {'reason': 'max_output_tokens'}), ('completed', None), ('completed', None))
    """
    reason = INCOMPLETE_REASONS.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(refusal: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": refusal}


def message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def reasoning_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    """Chat's ``reasoning_content``: the model's reasoning text (no summary: a chat upstream writes none)."""
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content, "status": status}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def reasoning_of(message: dict[str, Any]) -> str:
    """A chat message's reasoning: ``reasoning_content`` (llama.cpp, vLLM, DeepSeek) or ``reasoning``."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def usage_of(usage: Any) -> dict[str, Any] | None:
    """Chat's usage in the Responses API's names, with the details the SDK requires. An estimate (the
    gateway's, for upstreams that report none) still says so.

    >>> usage_of({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7})["output_tokens"]
    2
    """
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    total = _count(usage.get("total_tokens")) or prompt + completion
    cached = _count((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
    reasoning = _count((usage.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    translated: dict[str, Any] = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": total,
    }
    if usage.get("estimated") is True:
        translated["estimated"] = True
    return translated


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def response_object(
    request: TranslatedRequest,
    *,
    response_id: str,
    created_at: float,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    incomplete_details: dict[str, str] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Response envelope: what was made, and the request's settings as the SDK's ``Response`` has them."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": time.time() if status == "completed" else None,
        "background": False,
        "error": error,
        "incomplete_details": incomplete_details,
        "model": model,
        "output": output,
        "usage": usage,
        "previous_response_id": None,
        "store": False,  # nothing is stored: a request asking for it was refused
        "truncation": "disabled",
        **request.echo,
    }


def response_from_chat(
    completion: dict[str, Any],
    request: TranslatedRequest,
    *,
    response_id: str | None = None,
    created_at: float | None = None,
) -> dict[str, Any]:
    """A whole chat completion → the Response its Responses request asked for."""
    choice = _choice_zero(completion.get("choices"))
    message = choice.get("message")
    status, incomplete_details = status_of(choice.get("finish_reason"))
    model = completion.get("model")
    response = response_object(
        request,
        response_id=response_id or new_id("resp"),
        created_at=time.time() if created_at is None else created_at,
        model=model if isinstance(model, str) and model else request.model,
        status=status,
        output=output_items(message if isinstance(message, dict) else {}, status),
        usage=usage_of(completion.get("usage")),
        incomplete_details=incomplete_details,
    )
    if "guardrails" in completion:
        response["guardrails"] = completion["guardrails"]
    return response


def _choice_zero(choices: Any) -> dict[str, Any]:
    if not isinstance(choices, list):
        return {}
    found = [c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0]
    return found[0] if found else {}


def output_items(message: dict[str, Any], status: str) -> list[dict[str, Any]]:
    """A chat message's output items. Every answer has a message item, unless it is only tool calls. An
    answer cut short (``status`` incomplete) was cut in its last item: the items before it are whole."""
    items = []
    reasoning = reasoning_of(message)
    if reasoning:
        items.append(reasoning_item(new_id("rs"), reasoning, "completed"))
    parts = []
    text = content_text(message.get("content"))
    if text:
        parts.append(output_text(text))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(refusal_part(refusal))
    calls = [_call(call) for call in _calls(message)]
    if parts or not calls:
        items.append(message_item(new_id("msg"), parts or [output_text("")], "completed"))
    items += calls
    items[-1]["status"] = status
    return items


def _calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Tool calls (of functions) and a legacy ``function_call``, as ``{id, name, arguments}``."""
    found = []
    tool_calls = message.get("tool_calls")
    for call in tool_calls if isinstance(tool_calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and call.get("type", "function") == "function":
            found.append({"id": call.get("id"), **function})
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        found.append(legacy)
    return found


def _call(call: dict[str, Any]) -> dict[str, Any]:
    call_id, name, arguments = call.get("id"), call.get("name"), call.get("arguments")
    return function_call_item(
        new_id("fc"),
        call_id if isinstance(call_id, str) and call_id else new_id("call"),
        name if isinstance(name, str) else "",
        arguments if isinstance(arguments, str) else "",
        "completed",
    )
