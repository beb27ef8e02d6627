"""Where the guardable text sits in OpenAI requests and answers, so guards can read it and redaction can
write it back in place.

Every field a model reads, or that is recorded, is a slot: each role's content (text and refusal parts),
``name``, ``refusal`` and reasoning; tool and legacy function calls (arguments and names); tool and
function definitions (names, descriptions, and the text inside their JSON schemas); ``response_format``
schemas; ``prediction``; ``metadata`` (keys and values); and every other top-level string but a few
settings (``suffix``, ``user``, ``safety_identifier``, and fields unknown to the gateway).

Not read, on purpose: ids (``tool_call_id``, tool call ids), which the client makes up and the upstream
only matches; a JSON schema's structure (property names, ``pattern``, ``format``), which is syntax, not
prose; ``stop`` sequences, which end generation and are never in the model's context; and binary or
URL parts (images, audio, files), which no text guard can judge.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from feedback.messages import text_parts


class Slot(msgspec.Struct):
    """One string inside a JSON document: ``holder[key]``, described by ``where`` for reports.

    ``identifier``: a name the upstream may check against OpenAI's ``[A-Za-z0-9_-]``; a redaction is
    written in that alphabet (``<EMAIL_ADDRESS>`` → ``_EMAIL_ADDRESS_``), so the request stays valid.
    """

    holder: Any
    key: str | int
    where: str
    identifier: bool = False

    @property
    def text(self) -> str:
        value: str = self.holder[self.key]
        return value

    def write(self, text: str) -> None:
        self.holder[self.key] = _as_identifier(text) if self.identifier else text


class KeySlot(Slot):
    """A mapping's key (``metadata``): a rewrite renames the key and keeps its value."""

    @property
    def text(self) -> str:
        return str(self.key)

    def write(self, text: str) -> None:
        while text in self.holder:  # two keys redacted alike must not overwrite each other
            text += "_"
        self.holder[text] = self.holder.pop(self.key)
        self.key = text


_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_-]")


def _as_identifier(text: str) -> str:
    """
    >>> _as_identifier("ask_<EMAIL_ADDRESS>")
    'ask__EMAIL_ADDRESS_'
    """
    return _NOT_IDENTIFIER.sub("_", text)


def _strings(holder: Any, where: str, keys: tuple[str, ...], identifier: bool = False) -> list[Slot]:
    if not isinstance(holder, dict):
        return []
    return [
        Slot(holder, key, f"{where}.{key}" if where else key, identifier)
        for key in keys
        if isinstance(holder.get(key), str)
    ]


def _content_slots(holder: dict[str, Any], where: str) -> list[Slot]:
    content: Any = holder.get("content")
    if isinstance(content, str):
        return [Slot(holder, "content", f"{where}.content")]
    parts = text_parts(content)
    return [Slot(content[index], key, f"{where}.content[{index}].{key}") for index, key in parts]


def call_slots(holder: dict[str, Any], where: str) -> list[Slot]:
    """Tool calls and the legacy ``function_call``: arguments, then names."""
    slots = []
    for index, call in enumerate(holder.get("tool_calls") or ()):
        function = call.get("function") if isinstance(call, dict) else None
        here = f"{where}.tool_calls[{index}].function"
        slots += _strings(function, here, ("arguments",)) + _strings(function, here, ("name",), True)
    function = holder.get("function_call")
    here = f"{where}.function_call"
    return slots + _strings(function, here, ("arguments",)) + _strings(function, here, ("name",), True)


# Besides content and calls, what a message (or an answer's message) carries as text.
_MESSAGE_TEXT = ("refusal", "reasoning_content", "reasoning")


def _message_slots(message: Any, where: str) -> list[Slot]:
    if not isinstance(message, dict):
        return []
    slots = _content_slots(message, where) + call_slots(message, where)
    return slots + _strings(message, where, _MESSAGE_TEXT) + _strings(message, where, ("name",), True)


# JSON Schema keywords whose strings are prose, and those whose strings (at any depth) are data.
_SCHEMA_PROSE = frozenset({"description", "title", "$comment"})
_SCHEMA_DATA = frozenset({"default", "const", "enum", "examples"})


def json_schema_slots(schema: Any, where: str) -> list[Slot]:
    """The text a model reads in a JSON schema; walked without recursion, so no depth can crash it.

    >>> schema = {"type": "object", "properties": {"to": {"type": "string", "description": "mail",
    ...     "enum": ["a@b.io"]}}}
    >>> [s.where for s in json_schema_slots(schema, "s")]
    ['s.properties.to.description', 's.properties.to.enum[0]']
    """
    slots: list[Slot] = []
    stack: list[tuple[Any, str, bool]] = [(schema, where, False)]
    while stack:
        node, here, data = stack.pop()
        pairs = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        nested = []
        for key, value in pairs:
            path = f"{here}.{key}" if isinstance(key, str) else f"{here}[{key}]"
            if isinstance(value, str):
                if data or key in _SCHEMA_PROSE:
                    slots.append(Slot(node, key, path))
            elif isinstance(value, dict | list):
                nested.append((value, path, data or key in _SCHEMA_DATA))
        stack += reversed(nested)
    return slots


def _function_slots(function: Any, where: str) -> list[Slot]:
    """A tool's (or legacy function's, or a ``json_schema`` response format's) definition."""
    if not isinstance(function, dict):
        return []
    slots = _strings(function, where, ("name",), True) + _strings(function, where, ("description",))
    for key in ("parameters", "schema", "format"):  # function, json_schema, custom tool
        slots += json_schema_slots(function.get(key), f"{where}.{key}")
    return slots


def _tool_slots(raw: dict[str, Any]) -> list[Slot]:
    slots = []
    for index, tool in enumerate(raw.get("tools") or ()):
        if isinstance(tool, dict):
            for kind in ("function", "custom"):
                slots += _function_slots(tool.get(kind), f"tools[{index}].{kind}")
    for index, function in enumerate(raw.get("functions") or ()):
        slots += _function_slots(function, f"functions[{index}]")
    choice = raw.get("tool_choice")
    if isinstance(choice, dict):
        slots += _strings(choice.get("function"), "tool_choice.function", ("name",), True)
    slots += _strings(raw.get("function_call"), "function_call", ("name",), True)
    response_format = raw.get("response_format")
    if isinstance(response_format, dict):
        slots += _function_slots(response_format.get("json_schema"), "response_format.json_schema")
    return slots


def _metadata_slots(raw: dict[str, Any]) -> list[Slot]:
    metadata = raw.get("metadata")
    if not isinstance(metadata, dict):
        return []
    slots: list[Slot] = []
    # Named by position: a key may itself be the personal data, and reports never repeat it. Each value
    # comes before its key, so it is written back before the key is renamed.
    for index, key in enumerate(list(metadata)):
        if isinstance(metadata[key], str):
            slots.append(Slot(metadata, key, f"metadata[{index}].value"))
        slots.append(KeySlot(metadata, key, f"metadata[{index}].key"))
    return slots


# Top-level strings that are settings (or read above), never text. Every other top-level string is
# judged: ``suffix``, ``user``, ``safety_identifier``, ``prompt_cache_key``, and any field this gateway does
# not know, since the upstream may read it and the request is recorded.
_SETTINGS = frozenset(
    {
        "model",
        "prompt",
        "tool_choice",
        "function_call",
        "service_tier",
        "reasoning_effort",
        "verbosity",
        "stop",
    }
)


def _request_fields(raw: dict[str, Any]) -> list[Slot]:
    """Fields every completion request may carry besides its messages or prompt."""
    strings = [
        Slot(raw, key, key) for key, value in raw.items() if isinstance(value, str) and key not in _SETTINGS
    ]
    return strings + _metadata_slots(raw)


def chat_request_slots(raw: dict[str, Any]) -> list[Slot]:
    slots: list[Slot] = []
    for index, message in enumerate(raw.get("messages") or ()):
        slots += _message_slots(message, f"messages[{index}]")
    prediction = raw.get("prediction")
    if isinstance(prediction, dict):
        slots += _content_slots(prediction, "prediction")
    return slots + _tool_slots(raw) + _request_fields(raw)


def _text_or_texts(raw: dict[str, Any], field: str) -> list[Slot]:
    value = raw.get(field)
    if isinstance(value, str):
        return [Slot(raw, field, field)]
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return [Slot(value, index, f"{field}[{index}]") for index in range(len(value))]
    return []


def prompt_slots(raw: dict[str, Any]) -> list[Slot]:
    return _text_or_texts(raw, "prompt") + _request_fields(raw)


def embedding_input_slots(raw: dict[str, Any]) -> list[Slot]:
    return _text_or_texts(raw, "input") + _strings(raw, "", ("user",))


def is_token_prompt(raw: dict[str, Any], field: str = "prompt") -> bool:
    prompt = raw.get(field)
    return isinstance(prompt, list) and bool(prompt) and not all(isinstance(p, str) for p in prompt)


def chat_choice_slots(choice: dict[str, Any]) -> list[Slot]:
    """Content first (a disclaimer is appended to the first slot), then calls, refusal and reasoning."""
    return _message_slots(choice.get("message") or {}, "message")


def text_choice_slots(choice: dict[str, Any]) -> list[Slot]:
    return [Slot(choice, "text", "text")] if isinstance(choice.get("text"), str) else []


def drop_logprobs(choice: dict[str, Any]) -> None:
    """A choice's logprobs go with any text a guard removed or rewrote: they spell its tokens. (Rebuilding
    them for a redacted text would mean inventing tokens and probabilities the model never gave.)"""
    if choice.get("logprobs") is not None:
        choice["logprobs"] = None


_MESSAGE_CONTENT = re.compile(r"messages\[(\d+)\]\.content\b")
_PROMPT = re.compile(r"(prompt|input)(\[\d+\])?")
_ROLE_KINDS = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant",
               "tool": "tool", "function": "tool"}  # fmt: skip


def slot_kinds(raw: dict[str, Any], slots: list[Slot]) -> list[str]:
    """Per slot, the kind of text it holds, for guards that treat them apart (``JudgeContext.kinds``): a
    message's content is its role's kind (``developer`` is ``system``, ``function`` is ``tool``); a prompt
    or embedding input is ``user``; names, tool calls and definitions, metadata and the rest ``other``.

    >>> raw = {"messages": [{"role": "developer", "content": "a"}, {"role": "tool", "content": [
    ...     {"type": "text", "text": "b"}]}, {"role": "user", "content": "c", "name": "ann"}]}
    >>> slot_kinds(raw, chat_request_slots(raw))
    ['system', 'tool', 'user', 'other']
    >>> slot_kinds({"prompt": ["x", "y"]}, prompt_slots({"prompt": ["x", "y"]}))
    ['user', 'user']
    """
    listed = raw.get("messages")
    messages: list[Any] = listed if isinstance(listed, list) else []
    kinds = []
    for slot in slots:
        if _PROMPT.fullmatch(slot.where):
            kinds.append("user")
            continue
        found = _MESSAGE_CONTENT.match(slot.where)
        message = messages[int(found.group(1))] if found and int(found.group(1)) < len(messages) else None
        role = message.get("role") if isinstance(message, dict) else None
        kinds.append(_ROLE_KINDS.get(role, "other") if isinstance(role, str) else "other")
    return kinds
