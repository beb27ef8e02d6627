"""What differs between the guarded OpenAI endpoints: how a body is checked and read, where its texts sit,
and how a blocked answer is refused. Everything else on the guarded path is the same for all three."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from feedback.messages import message_text
from gateway.guarded.text_slots import (
    Slot,
    chat_choice_slots,
    chat_request_slots,
    drop_logprobs,
    embedding_input_slots,
    prompt_slots,
    text_choice_slots,
)
from gateway.protocol import check_chat, check_completion, check_embedding


class RequestShape(msgspec.Struct, frozen=True, kw_only=True):
    """What the gateway reads of a checked body (the rest is the upstream's business)."""

    model: str
    stream: bool = False
    n: int | None = None
    include_usage: bool = False
    prompt_chars: int = 0  # for a usage estimate when an upstream reports none


class AnswerText(msgspec.Struct, frozen=True):
    """Where an answer's text sits, how a blocked one is refused, and which stream field carries it."""

    slots: Callable[[dict[str, Any]], list[Slot]]  # of one choice
    refuse: Callable[[dict[str, Any], str], None]
    stream_field: str  # "chat" (``delta.content``) or "text"


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # as recorded: "chat.completions"
    path: str  # the upstream's path
    read: Callable[[dict[str, Any]], RequestShape]  # checks the body: 400s name the parameter
    text_param: str  # where its texts are, for errors
    request_slots: Callable[[dict[str, Any]], list[Slot]]
    token_field: str | None = None  # a field that may hold token ids, which no text guard can read
    takes_sources: bool = False  # sources to ground answers on (chat only)
    ranked: bool = False  # extra candidates are sampled for ranking (chat: what the ranking view shows)
    answer: AnswerText | None = None  # None: no answer text to guard (embeddings)


def _refuse_chat(choice: dict[str, Any], refusal: str) -> None:
    # Only the refusal stays: reasoning, tool and function calls and logprobs all spell the refused text.
    role = (choice.get("message") or {}).get("role", "assistant")
    choice["message"] = {"role": role, "content": None, "refusal": refusal}
    drop_logprobs(choice)
    choice["finish_reason"] = "content_filter"


def _refuse_text(choice: dict[str, Any], refusal: str) -> None:
    choice["text"] = ""
    drop_logprobs(choice)
    choice["finish_reason"] = "content_filter"


def _read_chat(raw: dict[str, Any]) -> RequestShape:
    chat = check_chat(raw)
    return RequestShape(
        model=chat.model,
        stream=chat.stream,
        n=chat.n,
        include_usage=bool(chat.stream_options and chat.stream_options.include_usage),
        prompt_chars=sum(len(message_text(message)) for message in raw["messages"]),
    )


def _read_completion(raw: dict[str, Any]) -> RequestShape:
    completion = check_completion(raw)
    prompt = completion.prompt
    return RequestShape(
        model=completion.model,
        stream=completion.stream,
        n=completion.n,
        include_usage=bool(completion.stream_options and completion.stream_options.include_usage),
        prompt_chars=len(prompt) if isinstance(prompt, str) else len(str(prompt)),
    )


def _read_embedding(raw: dict[str, Any]) -> RequestShape:
    return RequestShape(model=check_embedding(raw).model)


CHAT = Endpoint(
    name="chat.completions",
    path="/chat/completions",
    read=_read_chat,
    text_param="messages",
    request_slots=chat_request_slots,
    takes_sources=True,
    ranked=True,
    answer=AnswerText(chat_choice_slots, _refuse_chat, "chat"),
)
TEXT = Endpoint(
    name="completions",
    path="/completions",
    read=_read_completion,
    text_param="prompt",
    request_slots=prompt_slots,
    token_field="prompt",
    answer=AnswerText(text_choice_slots, _refuse_text, "text"),
)
# ``/v1/responses``, served through chat completions (``gateway.responses``): the chat endpoint under its
# own name, so events, metrics and exports tell the two surfaces apart.
RESPONSES = msgspec.structs.replace(CHAT, name="responses")
EMBEDDINGS = Endpoint(
    name="embeddings",
    path="/embeddings",
    read=_read_embedding,
    text_param="input",
    request_slots=embedding_input_slots,
    token_field="input",
)
