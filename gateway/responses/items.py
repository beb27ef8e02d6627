"""A Responses request's ``instructions`` and ``input`` → chat-completions ``messages``.

Every text of the input lands in a chat message where the chat path's guards read it: ``instructions``
and ``system``/``developer`` messages as ``system`` messages, message items' text parts as content,
``function_call`` items as an assistant's ``tool_calls`` (arguments and name), ``function_call_output``
items as ``tool`` messages. Input images become chat ``image_url`` parts, as the chat path passes them.

``Placement`` remembers where each chat message and call came from, so an error or a guard's report
about ``messages[2].content`` can name ``input[1].content[0].text``, the parameter the client sent.

>>> placement = Placement()
>>> messages = chat_messages("Be brief.", [{"role": "user", "content": "Hi"}], Budget(10), placement)
>>> messages
[{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
>>> placement.param_of("messages[1].content")
'input[0].content'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.errors import InvalidRequest
from gateway.responses.checks import (
    Budget,
    expect_list,
    expect_name,
    expect_object,
    expect_string,
    one_of,
    only_known_keys,
    shown,
    unsupported,
)

Message = dict[str, Any]

# Chat servers other than OpenAI's know no ``developer`` role; the Responses API ranks the two alike.
_CHAT_ROLE = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_TEXT_PARTS = ("input_text", "output_text")
_IMAGE_DETAIL = ("auto", "low", "high")  # chat's; the Responses API's "original" has no chat equivalent

# Item types that need the upstream's own tools or stored state: refused with the reason.
_HOSTED_ITEMS = {
    "item_reference": "items are referenced from stored responses, and this gateway stores none",
    **dict.fromkeys(
        (
            "file_search_call",
            "computer_call",
            "computer_call_output",
            "web_search_call",
            "image_generation_call",
            "code_interpreter_call",
            "local_shell_call",
            "local_shell_call_output",
            "shell_call",
            "shell_call_output",
            "apply_patch_call",
            "apply_patch_call_output",
            "mcp_list_tools",
            "mcp_approval_request",
            "mcp_approval_response",
            "mcp_call",
            "custom_tool_call",
            "custom_tool_call_output",
            "tool_search_call",
            "tool_search_output",
            "additional_tools",
            "configuration_update",
            "compaction",
            "compaction_trigger",
            "program",
            "program_output",
        ),
        "built-in and custom tools are served only by an upstream with its own /v1/responses",
    ),
}


class Placement:
    """Chat paths (``messages[2].content``) → the Responses parameters they were made from."""

    def __init__(self) -> None:
        self._prefixes: dict[str, str] = {}

    def place(self, chat_path: str, param: str) -> None:
        self._prefixes[chat_path] = param

    def param_of(self, chat_path: str) -> str:
        """The Responses parameter a chat path came from: its longest placed prefix, with the rest kept;
        a path nothing was placed under (``user``) is the same in both.

        >>> placement = Placement()
        >>> placement.place("tools[0].function", "tools[2]")
        >>> placement.param_of("tools[0].function.parameters.properties.city.description")
        'tools[2].parameters.properties.city.description'
        >>> placement.param_of("user")
        'user'
        """
        cuts = [i for i, char in enumerate(chat_path) if char in ".["] + [len(chat_path)]
        for cut in reversed(cuts):
            param = self._prefixes.get(chat_path[:cut])
            if param is not None:
                return param + chat_path[cut:]
        return chat_path


def chat_messages(
    instructions: Any, input_: Any, budget: Budget, placement: Placement, native: bool = False
) -> list[Message]:
    """The chat conversation of ``instructions`` (a system message, first) and ``input``. ``native``: the
    input is relayed as it came to an upstream with its own ``/v1/responses``, so every text in it must be
    judged: items and parts may carry no key read nowhere here, and reasoning items' texts are judged
    (each an assistant message's ``reasoning_content``)."""
    messages: list[Message] = []
    if instructions is not None:
        _add(messages, placement, {"role": "system", "content": expect_string(instructions, "instructions")})
        placement.place(f"messages[{len(messages) - 1}].content", "instructions")
    if isinstance(input_, str):
        _add(messages, placement, {"role": "user", "content": input_})
        placement.place(f"messages[{len(messages) - 1}].content", "input")
    elif input_ is not None:
        items = expect_list(input_, "input")
        budget.spend(len(items), "input")  # before any item is read: a huge list is refused at once
        for index, item in enumerate(items):
            where = f"input[{index}]"
            if native:
                _only_read_keys(expect_object(item, where), where)
            if native and item.get("type") == "reasoning":
                _judged_reasoning(messages, placement, item, where, budget)
            else:
                _item(messages, placement, expect_object(item, where), where, budget)
    if not messages:
        raise InvalidRequest(
            "Missing required parameter: 'input' (or 'instructions'): there is nothing to answer.",
            param="input",
        )
    return messages


def _add(messages: list[Message], placement: Placement, message: Message, origin: str | None = None) -> None:
    messages.append(message)
    if origin is not None:
        placement.place(f"messages[{len(messages) - 1}]", origin)


def _item(
    messages: list[Message], placement: Placement, item: dict[str, Any], where: str, budget: Budget
) -> None:
    kind = item.get("type")
    if kind is None and "role" in item:  # the Responses API's "easy" message: no type
        kind = "message"
    if kind is None:
        raise InvalidRequest(f"Missing required parameter: '{where}.type'.", param=f"{where}.type")
    translate = _ITEMS.get(kind) if isinstance(kind, str) else None
    if translate is not None:
        translate(messages, placement, item, where, budget)
        return
    if isinstance(kind, str) and kind in _HOSTED_ITEMS:
        raise unsupported(f"{where}.type", f"'{kind}' items: {_HOSTED_ITEMS[kind]}.", "unsupported_value")
    raise InvalidRequest(
        f"Invalid value for '{where}.type': {shown(kind)} is not an input item type this gateway translates "
        "(message, function_call, function_call_output, reasoning).",
        param=f"{where}.type",
        code="invalid_value",
    )


def _message(
    messages: list[Message], placement: Placement, item: dict[str, Any], where: str, budget: Budget
) -> None:
    role = one_of(item.get("role"), f"{where}.role", tuple(_CHAT_ROLE))
    content = item.get("content")
    chat: Message = {"role": _CHAT_ROLE[role]}
    index = len(messages)
    if isinstance(content, str):
        chat["content"] = content
        placement.place(f"messages[{index}].content", f"{where}.content")
    else:
        parts = expect_list(content, f"{where}.content")
        if not parts:
            raise InvalidRequest(
                f"Invalid value for '{where}.content': it must not be empty.", param=f"{where}.content"
            )
        budget.spend(len(parts) - 1, f"{where}.content")  # the first part was counted with its item
        chat["content"] = [_part(part, role, f"{where}.content[{i}]") for i, part in enumerate(parts)]
        _collapse(chat, placement, f"messages[{index}].content", f"{where}.content")
    _add(messages, placement, chat, where)


def _part(part: Any, role: str, where: str) -> dict[str, Any]:
    """One content part in chat's shape: text (input or output text), an assistant's refusal, an image."""
    part = expect_object(part, where)
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        return {"type": "text", "text": expect_string(part.get("text"), f"{where}.text")}
    if kind == "refusal" and role == "assistant":
        return {"type": "refusal", "refusal": expect_string(part.get("refusal"), f"{where}.refusal")}
    if kind == "input_image" and role == "user":
        return _image(part, where)
    if kind == "input_file":
        raise unsupported(
            where,
            "file inputs are not translated to chat completions (no text guard can read a file, and chat "
            "servers rarely take one); send the file's text as input_text.",
            "unsupported_value",
        )
    if kind in ("refusal", "input_image"):
        raise InvalidRequest(
            f"Invalid value for '{where}.type': a '{kind}' part cannot be in a '{role}' message.",
            param=f"{where}.type",
            code="invalid_value",
        )
    raise InvalidRequest(
        f"Invalid value for '{where}.type': {shown(kind)} is not a content part type this gateway translates "
        "(input_text, output_text, refusal, input_image).",
        param=f"{where}.type",
        code="invalid_value",
    )


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    if part.get("file_id") is not None:
        raise unsupported(f"{where}.file_id", "files are stored by OpenAI; send the image's URL.")
    url = expect_name(part.get("image_url"), f"{where}.image_url")
    image: dict[str, Any] = {"url": url}
    if part.get("detail") in _IMAGE_DETAIL:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _collapse(chat: Message, placement: Placement, chat_path: str, param: str) -> None:
    """One text part becomes a plain string (what every chat server takes); otherwise the parts stay in
    order, so ``content[i]`` is the same index on both sides."""
    parts = chat["content"]
    if len(parts) == 1 and parts[0]["type"] == "text":
        chat["content"] = parts[0]["text"]
        placement.place(chat_path, f"{param}[0].text")
    else:
        placement.place(chat_path, param)


def _function_call(
    messages: list[Message], placement: Placement, item: dict[str, Any], where: str, budget: Budget
) -> None:
    """An earlier answer's call: a tool call of the assistant message before it (one message holds the
    answer's text and all its parallel calls, as chat has it), or of a new one."""
    call = {
        "id": expect_name(item.get("call_id"), f"{where}.call_id"),
        "type": "function",
        "function": {
            "name": expect_name(item.get("name"), f"{where}.name"),
            "arguments": expect_string(item.get("arguments"), f"{where}.arguments"),
        },
    }
    if not messages or messages[-1]["role"] != "assistant":
        _add(messages, placement, {"role": "assistant", "content": None}, where)
    calls = messages[-1].setdefault("tool_calls", [])
    calls.append(call)
    placement.place(f"messages[{len(messages) - 1}].tool_calls[{len(calls) - 1}].function", where)


def _function_call_output(
    messages: list[Message], placement: Placement, item: dict[str, Any], where: str, budget: Budget
) -> None:
    call_id = expect_name(item.get("call_id"), f"{where}.call_id")
    output = item.get("output")
    chat: Message = {"role": "tool", "tool_call_id": call_id}
    index = len(messages)
    if isinstance(output, str):
        chat["content"] = output
        placement.place(f"messages[{index}].content", f"{where}.output")
    else:
        parts = expect_list(output, f"{where}.output")
        if not parts:
            raise InvalidRequest(
                f"Invalid value for '{where}.output': it must not be empty.", param=f"{where}.output"
            )
        budget.spend(len(parts) - 1, f"{where}.output")
        chat["content"] = [_output_part(part, f"{where}.output[{i}]") for i, part in enumerate(parts)]
        _collapse(chat, placement, f"messages[{index}].content", f"{where}.output")
    _add(messages, placement, chat, where)


def _output_part(part: Any, where: str) -> dict[str, Any]:
    part = expect_object(part, where)
    if part.get("type") == "input_text":
        return {"type": "text", "text": expect_string(part.get("text"), f"{where}.text")}
    raise unsupported(
        f"{where}.type",
        "a function call's output is translated to a chat tool message, which carries text only.",
        "unsupported_value",
    )


def _reasoning(
    messages: list[Message], placement: Placement, item: dict[str, Any], where: str, budget: Budget
) -> None:
    """An earlier answer's reasoning, sent back as agents do: chat has no place for it (chat models do
    not read their earlier turns' reasoning), so it is left out; nothing of it reaches the upstream."""


_Translate = Callable[[list[Message], Placement, dict[str, Any], str, Budget], None]
_ITEMS: dict[str, _Translate] = {
    "message": _message,
    "function_call": _function_call,
    "function_call_output": _function_call_output,
    "reasoning": _reasoning,
}


# In native mode, the keys an input item or content part may carry: every one of them is read above (or
# is an id or a status, which no model reads as text). Anything else would reach the upstream unjudged.
_ITEM_KEYS = {
    "message": frozenset({"type", "role", "content", "id", "status", "phase"}),
    "function_call": frozenset({"type", "call_id", "name", "arguments", "id", "status"}),
    "function_call_output": frozenset({"type", "call_id", "output", "id", "status"}),
    "reasoning": frozenset({"type", "id", "summary", "content", "encrypted_content", "status"}),
}
_PART_KEYS = {
    "input_text": frozenset({"type", "text"}),
    "output_text": frozenset({"type", "text", "annotations", "logprobs"}),
    "refusal": frozenset({"type", "refusal"}),
    "input_image": frozenset({"type", "image_url", "detail", "file_id"}),
    "summary_text": frozenset({"type", "text"}),
    "reasoning_text": frozenset({"type", "text"}),
}
_EMPTY_ONLY = ("annotations", "logprobs")  # an earlier answer's citations and token texts: not judged


def _only_read_keys(item: dict[str, Any], where: str) -> None:
    """A 400 for a key of an item, or of its parts, that no guard would read.

    >>> part = {"type": "input_text", "text": "hi", "x": "y"}
    >>> _only_read_keys({"role": "user", "content": [part]}, "input[0]")
    Traceback (most recent call last):
    ...
    gateway.errors.InvalidRequest: Unknown parameter: 'input[0].content[0].x'.
    """
    kind = item.get("type", "message" if "role" in item else None)
    _known_keys(item, _ITEM_KEYS.get(kind) if isinstance(kind, str) else None, where)
    for key in ("content", "output", "summary"):
        parts = item.get(key)
        for index, part in enumerate(parts if isinstance(parts, list) else ()):
            here = f"{where}.{key}[{index}]"
            part_kind = expect_object(part, here).get("type")
            _known_keys(part, _PART_KEYS.get(part_kind) if isinstance(part_kind, str) else None, here)
            for listed in _EMPTY_ONLY:
                if part.get(listed):
                    raise unsupported(f"{here}.{listed}", "only an empty list is relayed: it is not judged.")


def _known_keys(holder: dict[str, Any], known: frozenset[str] | None, where: str) -> None:
    if known is None:  # an unknown type: refused by the translation, with its reason
        return
    only_known_keys(holder, known, where)


def _judged_reasoning(
    messages: list[Message], placement: Placement, item: dict[str, Any], where: str, budget: Budget
) -> None:
    """A reasoning item relayed to a native upstream: each summary and content text an assistant message's
    ``reasoning_content``, so the guards read it (``encrypted_content`` is the upstream's own, opaque)."""
    texts = []
    for key in ("summary", "content"):
        parts = item.get(key)
        if parts is None:
            continue
        for index, part in enumerate(expect_list(parts, f"{where}.{key}")):
            texts.append(
                (
                    expect_string(part.get("text"), f"{where}.{key}[{index}].text"),
                    f"{where}.{key}[{index}].text",
                )
            )
    budget.spend(max(0, len(texts) - 1), where)
    for text, param in texts:
        _add(messages, placement, {"role": "assistant", "content": None, "reasoning_content": text})
        placement.place(f"messages[{len(messages) - 1}].reasoning_content", param)
