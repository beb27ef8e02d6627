"""Where the guardable text sits in OpenAI requests and answers, so guards can read it and redaction can
write it back in place. Every role counts: system, user, assistant, tool, and tool-call arguments."""

from __future__ import annotations

from typing import Any

import msgspec


class Slot(msgspec.Struct):
    """One string inside a JSON document: ``holder[key]``, described by ``where`` for reports."""

    holder: Any
    key: str | int
    where: str

    @property
    def text(self) -> str:
        value: str = self.holder[self.key]
        return value

    def write(self, text: str) -> None:
        self.holder[self.key] = text


def _content_slots(holder: dict[str, Any], where: str) -> list[Slot]:
    content = holder.get("content")
    if isinstance(content, str):
        return [Slot(holder, "content", f"{where}.content")]
    slots = []
    if isinstance(content, list):
        for index, part in enumerate(content):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                slots.append(Slot(part, "text", f"{where}.content[{index}].text"))
    return slots


def _tool_call_slots(holder: dict[str, Any], where: str) -> list[Slot]:
    slots = []
    for index, call in enumerate(holder.get("tool_calls") or ()):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            slots.append(Slot(function, "arguments", f"{where}.tool_calls[{index}].function.arguments"))
    return slots


def chat_request_slots(raw: dict[str, Any]) -> list[Slot]:
    slots: list[Slot] = []
    for index, message in enumerate(raw.get("messages") or ()):
        where = f"messages[{index}]"
        slots += _content_slots(message, where) + _tool_call_slots(message, where)
    return slots


def _text_or_texts(raw: dict[str, Any], field: str) -> list[Slot]:
    value = raw.get(field)
    if isinstance(value, str):
        return [Slot(raw, field, field)]
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return [Slot(value, index, f"{field}[{index}]") for index in range(len(value))]
    return []


def prompt_slots(raw: dict[str, Any]) -> list[Slot]:
    return _text_or_texts(raw, "prompt")


def embedding_input_slots(raw: dict[str, Any]) -> list[Slot]:
    return _text_or_texts(raw, "input")


def is_token_prompt(raw: dict[str, Any], field: str = "prompt") -> bool:
    prompt = raw.get(field)
    return isinstance(prompt, list) and bool(prompt) and not all(isinstance(p, str) for p in prompt)


def chat_choice_slots(choice: dict[str, Any]) -> list[Slot]:
    message = choice.get("message") or {}
    return _content_slots(message, "message") + _tool_call_slots(message, "message")


def text_choice_slots(choice: dict[str, Any]) -> list[Slot]:
    return [Slot(choice, "text", "text")] if isinstance(choice.get("text"), str) else []
