"""A Responses request (the decoded JSON of ``POST /v1/responses``) → a chat-completions body.

Every field of the SDK's ``ResponseCreateParams`` has a fate (``FIELDS``; docs/api.md's table says the same):

- **translated** into the chat body: ``model``; ``instructions`` (a ``system`` message, first); ``input`` (a
  string is one user message; items: see ``gateway.responses.items``); function ``tools`` (flat in the
  Responses API, nested under ``function`` in chat; ``strict`` only when given, since the two APIs'
  defaults differ and few chat servers enforce it); ``tool_choice`` (``allowed_tools`` keeps only the
  allowed tools and their mode); ``max_output_tokens`` → ``max_tokens`` (the name every chat server takes);
  ``temperature``; ``top_p``; ``stream`` (with ``stream_options.include_usage``, so the final event has the
  usage); ``parallel_tool_calls``; ``user``; ``text.format`` → ``response_format``; ``text.verbosity`` →
  ``verbosity``; ``reasoning.effort`` → ``reasoning_effort``;
- **kept on the Response only**: ``metadata`` (the client's bookkeeping, not model input), ``max_tool_calls``,
  ``safety_identifier``, ``prompt_cache_key``;
- **ignored**, harmlessly: ``include`` entries for outputs this translation never makes, ``service_tier``,
  ``prompt_cache_retention``, ``stream_options`` (no obfuscation is added), ``reasoning.summary`` (no
  summary is made), ``store: false``, ``background: false``, ``truncation: "disabled"``;
- **a 400 naming the field** when set: ``previous_response_id``, ``conversation``, ``store: true`` (this
  gateway keeps no state), ``background: true`` (these four, the **stateful** fields, are let through in
  ``native`` mode: for an upstream with its own ``/v1/responses``, see ``gateway.responses.native``),
  ``prompt`` (templates live on OpenAI's servers),
  ``truncation: "auto"``, ``top_logprobs`` and ``include: ["message.output_text.logprobs"]`` (log
  probabilities are not translated), ``reasoning.mode`` other than ``standard``, ``context_management``,
  ``moderation``, ``access_programs``, ``image``, ``background_options``, ``prompt_cache_options``; any
  tool but a function; ``n`` (a Response has one output); any field the SDK does not know.

In ``native`` mode the chat body is never sent: it is what the guards read (and what is recorded) of a
Responses body relayed as it came. So it also carries what a native upstream reads or stores and a chat
upstream would not: ``metadata``, ``safety_identifier``, ``prompt_cache_key``, and the texts of input
reasoning items; and input items and parts may carry no key the translation does not read.

The gateway's own fields (``guardrails``, ``sources``) go into the chat body as they came: the chat path
reads them there and sends them nowhere. A null value is an absent one, as OpenAI reads it.

>>> translated = translate_request({"model": "m", "input": "Hi", "max_output_tokens": 50, "stream": True})
>>> translated.chat
{'model': 'm', 'messages': [{'role': 'user', 'content': 'Hi'}], 'stream': True, \
'stream_options': {'include_usage': True}, 'max_tokens': 50}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidRequest
from gateway.limits import LimitsSettings
from gateway.responses.checks import (
    Budget,
    expect_list,
    expect_name,
    expect_object,
    expect_string,
    name_shown,
    one_of,
    only_known_keys,
    optional_bool,
    optional_count,
    optional_number,
    optional_string,
    shown,
    unsupported,
)
from gateway.responses.items import Placement, chat_messages

# The gateway's own request fields (``gateway.guarded.request.GATEWAY_FIELDS``, kept equal by a test): not
# imported, so that the guarded path may import this package without a circle.
GATEWAY_FIELDS = frozenset({"guardrails", "sources"})

NO_STATE = "this gateway keeps no conversation state; send the whole conversation in 'input'."
# Fields that need the upstream's own stored state: relayed in native mode, refused otherwise.
STATEFUL = ("previous_response_id", "conversation", "store", "background")
FIELDS: dict[str, str] = {
    "model": "translated",
    "input": "translated: a string is a user message; items become messages, tool calls and tool messages",
    "instructions": "translated: a system message, first",
    "tools": "translated: function tools; any other tool type is a 400",
    "tool_choice": "translated: none, auto, required, a function, allowed_tools (of functions)",
    "max_output_tokens": "translated: max_tokens",
    "temperature": "translated",
    "top_p": "translated",
    "stream": "translated, with stream_options.include_usage",
    "parallel_tool_calls": "translated",
    "user": "translated",
    "text": "translated: format → response_format, verbosity → verbosity",
    "reasoning": "translated: effort → reasoning_effort; summary ignored; mode other than standard: 400",
    "metadata": "kept on the Response, not sent upstream",
    "max_tool_calls": "kept on the Response: it limits built-in tools, and none are served",
    "safety_identifier": "kept on the Response, not sent upstream",
    "prompt_cache_key": "kept on the Response, not sent upstream",
    "include": "ignored, but message.output_text.logprobs: 400",
    "service_tier": "ignored",
    "prompt_cache_retention": "ignored",
    "stream_options": "ignored: no obfuscation is added",
    "store": "false or absent: nothing is stored; true: 400",
    "background": "false or absent; true: 400",
    "truncation": "disabled or absent; auto: 400",
    "top_logprobs": "400: log probabilities are not translated",
    "previous_response_id": "400: " + NO_STATE,
    "conversation": "400: " + NO_STATE,
    "prompt": "400: prompt templates are stored by OpenAI",
    "context_management": "400",
    "moderation": "400: this gateway's own guards moderate",
    "access_programs": "400",
    "image": "400",
    "background_options": "400",
    "prompt_cache_options": "400",
}
_REFUSED = {
    "previous_response_id": NO_STATE,
    "conversation": NO_STATE,
    "prompt": "prompt templates are stored by OpenAI; send the prompt's text in 'instructions' and 'input'.",
    "top_logprobs": "log probabilities are not translated to chat completions.",
    "moderation": "this gateway moderates with its own guards, configured by its policy.",
    **dict.fromkeys(
        ("context_management", "access_programs", "image", "background_options", "prompt_cache_options"),
        "the upstream is served through chat completions, which have no such setting.",
    ),
}
_NOT_RESPONSES = {
    "n": "a Response has one output; the Responses API has no 'n'.",
    "messages": "this is the Responses API; send the conversation in 'input' (or use /v1/chat/completions).",
}
_REASONING_EFFORT = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_SUMMARY = ("auto", "concise", "detailed")
_VERBOSITY = ("low", "medium", "high")
# The SDK's ResponseTextConfigParam and its three formats: any other key is refused, never dropped (and,
# to a native upstream, never relayed unjudged).
_TEXT_KEYS = frozenset({"format", "verbosity"})
_FORMAT_KEYS = {
    "text": frozenset({"type"}),
    "json_object": frozenset({"type"}),
    "json_schema": frozenset({"type", "name", "schema", "description", "strict"}),
}
_FUNCTION_TOOL_KEYS = frozenset({"type", "name", "description", "parameters", "strict"})
_METADATA_PAIRS, _METADATA_KEY_CHARS, _METADATA_VALUE_CHARS = 16, 64, 512  # OpenAI's own limits


@dataclass(frozen=True, slots=True)
class TranslatedRequest:
    chat: dict[str, Any]  # the chat-completions body, with the gateway's own fields
    echo: dict[str, Any]  # what the Response object repeats of the request (``gateway.responses.response``)
    placement: Placement  # chat paths → the Responses parameters they came from
    native: bool = False  # made for a native upstream: the chat body is for the guards, never sent
    stateful: tuple[str, ...] = ()  # the stateful fields the request set (native mode only)

    @property
    def model(self) -> str:
        model: str = self.chat["model"]
        return model

    @property
    def stream(self) -> bool:
        return bool(self.chat.get("stream"))

    def param_of(self, chat_path: str) -> str:
        """The Responses parameter behind a chat path (an error's ``param``, a report's ``where``)."""
        return self.placement.param_of(chat_path)


def translate_request(
    raw: dict[str, Any], limits: LimitsSettings | None = None, native: bool = False
) -> TranslatedRequest:
    """Check a Responses request and translate it; every refusal is a 400 (or a 413 over the budget)
    naming the parameter. ``raw`` is not changed (though the chat body shares its deeper values).
    ``native``: for an upstream with its own ``/v1/responses`` (see the module's docstring)."""
    present = {key: value for key, value in raw.items() if value is not None}
    stateful = _stateful(present) if native else ()
    _refuse_fields({key: value for key, value in present.items() if key not in stateful})
    budget = Budget((limits or LimitsSettings()).max_input_texts)
    placement = Placement()
    messages = chat_messages(present.get("instructions"), present.get("input"), budget, placement, native)
    chat: dict[str, Any] = {"model": expect_name(present.get("model"), "model"), "messages": messages}
    echo: dict[str, Any] = {"instructions": present.get("instructions")}
    if optional_bool(present.get("stream"), "stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    _sampling(present, chat, echo)
    _tools(present, chat, echo, budget, placement)
    _text(present, chat, echo, placement)
    _reasoning(present, chat, echo)
    _kept(present, echo)
    if native:  # read by a native upstream, or stored by it: judged like any text of the request
        chat.update((key, echo[key]) for key in _NATIVE_KEPT if echo[key])
    _ignored(present)
    chat.update((key, present[key]) for key in GATEWAY_FIELDS & present.keys())
    return TranslatedRequest(chat, echo, placement, native=native, stateful=stateful)


_NATIVE_KEPT = ("metadata", "safety_identifier", "prompt_cache_key")


def _stateful(present: dict[str, Any]) -> tuple[str, ...]:
    """The stateful fields a request set, type-checked (a native upstream reads them)."""
    optional_string(present.get("previous_response_id"), "previous_response_id")
    conversation = present.get("conversation")
    if conversation is not None and not isinstance(conversation, str):
        expect_name(expect_object(conversation, "conversation").get("id"), "conversation.id")
    for key in ("store", "background"):
        optional_bool(present.get(key), key)
    return tuple(key for key in STATEFUL if present.get(key) not in (None, False))


def _refuse_fields(present: dict[str, Any]) -> None:
    """Fields no translation can honour, and fields the Responses API does not have, before any work."""
    for key in present:
        if key in _NOT_RESPONSES:
            raise unsupported(key, _NOT_RESPONSES[key])
        if key not in FIELDS and key not in GATEWAY_FIELDS:
            named = name_shown(key)
            raise InvalidRequest(f"Unknown parameter: '{named}'.", param=named, code="unknown_parameter")
        if key in _REFUSED:
            raise unsupported(key, _REFUSED[key])
    if optional_bool(present.get("store"), "store"):
        raise unsupported("store", "responses are not stored here; send 'store': false or leave it out.")
    if optional_bool(present.get("background"), "background"):
        raise unsupported("background", "background responses need an upstream with its own /v1/responses.")
    truncation = present.get("truncation")
    if truncation is not None and one_of(truncation, "truncation", ("auto", "disabled")) == "auto":
        raise unsupported("truncation", "the chat upstream cannot drop input items to fit its context.")


def _sampling(present: dict[str, Any], chat: dict[str, Any], echo: dict[str, Any]) -> None:
    max_output_tokens = optional_count(present.get("max_output_tokens"), "max_output_tokens")
    temperature = optional_number(present.get("temperature"), "temperature", 0, 2)
    top_p = optional_number(present.get("top_p"), "top_p", 0, 1)
    user = optional_string(present.get("user"), "user")
    for key, value in (("max_tokens", max_output_tokens), ("temperature", temperature), ("top_p", top_p)):
        if value is not None:
            chat[key] = value
    if user is not None:
        chat["user"] = user
    echo.update(max_output_tokens=max_output_tokens, temperature=temperature, top_p=top_p, user=user)


def _tools(
    present: dict[str, Any], chat: dict[str, Any], echo: dict[str, Any], budget: Budget, placement: Placement
) -> None:
    tools = expect_list(present.get("tools", []), "tools")
    budget.spend(len(tools), "tools")
    echoed = [_function_tool(tool, f"tools[{index}]") for index, tool in enumerate(tools)]
    choice, allowed = _tool_choice(present.get("tool_choice"), {tool["name"] for tool in echoed})
    kept = [index for index, tool in enumerate(echoed) if allowed is None or tool["name"] in allowed]
    if kept:
        chat["tools"] = [_chat_tool(echoed[index]) for index in kept]
        for position, index in enumerate(kept):
            placement.place(f"tools[{position}].function", f"tools[{index}]")
    if choice is not None:
        chat["tool_choice"] = choice
        if isinstance(choice, dict):
            placement.place("tool_choice.function", "tool_choice")
    parallel = optional_bool(present.get("parallel_tool_calls"), "parallel_tool_calls")
    if parallel is not None:
        chat["parallel_tool_calls"] = parallel
    echo.update(
        tools=echoed,
        tool_choice=present.get("tool_choice", "auto"),
        parallel_tool_calls=True if parallel is None else parallel,
    )


def _function_tool(tool: Any, where: str) -> dict[str, Any]:
    """A Responses function tool, checked and complete (as a Response lists it)."""
    tool = expect_object(tool, where)
    kind = tool.get("type")
    if kind != "function":
        expect_name(kind, f"{where}.type")
        raise unsupported(
            f"{where}.type",
            f"{shown(kind)} tools are served only by an upstream with its own /v1/responses; function "
            "tools are translated to chat completions.",
            "unsupported_value",
        )
    for key, value in tool.items():
        if key not in _FUNCTION_TOOL_KEYS and value not in (None, False, ["direct"]):
            raise unsupported(
                f"{where}.{name_shown(key)}", "chat completions' function tools have no such setting."
            )
    parameters = tool.get("parameters")
    return {
        "type": "function",
        "name": expect_name(tool.get("name"), f"{where}.name"),
        "description": optional_string(tool.get("description"), f"{where}.description"),
        "parameters": None if parameters is None else expect_object(parameters, f"{where}.parameters"),
        "strict": optional_bool(tool.get("strict"), f"{where}.strict"),
    }


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {"name": tool["name"]}
    function.update(
        (key, tool[key]) for key in ("description", "parameters", "strict") if tool[key] is not None
    )
    return {"type": "function", "function": function}


def _tool_choice(value: Any, names: set[str]) -> tuple[str | dict[str, Any] | None, set[str] | None]:
    """Chat's ``tool_choice``, and the names of the tools it allows (None: all of them)."""
    if value is None or isinstance(value, str):
        return (None if value is None else one_of(value, "tool_choice", ("none", "auto", "required"))), None
    choice = expect_object(value, "tool_choice")
    kind = choice.get("type")
    if kind == "function":
        return {"type": "function", "function": {"name": _named(choice, "tool_choice", names)}}, None
    if kind == "allowed_tools":  # only the allowed tools are sent: every chat server understands that
        mode = one_of(choice.get("mode"), "tool_choice.mode", ("auto", "required"))
        listed = expect_list(choice.get("tools"), "tool_choice.tools")
        if not listed:
            raise InvalidRequest(
                "Invalid value for 'tool_choice.tools': it must not be empty.", param="tool_choice.tools"
            )
        allowed = set()
        for index, tool in enumerate(listed):
            where = f"tool_choice.tools[{index}]"
            if expect_object(tool, where).get("type") != "function":
                raise unsupported(f"{where}.type", "only function tools are translated.", "unsupported_value")
            allowed.add(_named(tool, where, names))
        return mode, allowed
    raise unsupported(
        "tool_choice.type",
        f"{shown(kind)}: only none, auto, required, a function and allowed_tools are translated.",
        "unsupported_value",
    )


def _named(choice: dict[str, Any], where: str, names: set[str]) -> str:
    name = expect_name(choice.get("name"), f"{where}.name")
    if name not in names:
        raise InvalidRequest(
            f"Invalid value for '{where}.name': no function tool named {shown(name)} is in 'tools'.",
            param=f"{where}.name",
            code="invalid_value",
        )
    return name


def _text(present: dict[str, Any], chat: dict[str, Any], echo: dict[str, Any], placement: Placement) -> None:
    text = expect_object(present.get("text", {}), "text")
    only_known_keys(text, _TEXT_KEYS, "text")
    fmt = expect_object(text.get("format") or {"type": "text"}, "text.format")
    kind = one_of(fmt.get("type"), "text.format.type", ("text", "json_object", "json_schema"))
    only_known_keys(fmt, _FORMAT_KEYS[kind], "text.format")
    echoed: dict[str, Any] = {"format": {"type": kind}}
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        schema: dict[str, Any] = {
            "name": expect_name(fmt.get("name"), "text.format.name"),
            "schema": expect_object(fmt.get("schema"), "text.format.schema"),
        }
        description = optional_string(fmt.get("description"), "text.format.description")
        strict = optional_bool(fmt.get("strict"), "text.format.strict")
        schema.update(
            (key, value)
            for key, value in (("description", description), ("strict", strict))
            if value is not None
        )
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
        placement.place("response_format.json_schema", "text.format")
        echoed["format"] = {"type": kind, **schema}
    if text.get("verbosity") is not None:
        chat["verbosity"] = echoed["verbosity"] = one_of(text["verbosity"], "text.verbosity", _VERBOSITY)
    echo["text"] = echoed


def _reasoning(present: dict[str, Any], chat: dict[str, Any], echo: dict[str, Any]) -> None:
    if "reasoning" not in present:
        echo["reasoning"] = None
        return
    reasoning = expect_object(present["reasoning"], "reasoning")
    for key in ("summary", "generate_summary"):  # no summary is made: a chat upstream writes none
        if reasoning.get(key) is not None:
            one_of(reasoning[key], f"reasoning.{key}", _SUMMARY)
    mode = optional_string(reasoning.get("mode"), "reasoning.mode")
    if mode not in (None, "standard"):
        raise unsupported("reasoning.mode", "the chat upstream has one reasoning mode.", "unsupported_value")
    effort = reasoning.get("effort")
    if effort is not None:
        chat["reasoning_effort"] = one_of(effort, "reasoning.effort", _REASONING_EFFORT)
    echo["reasoning"] = {"effort": effort}


def _kept(present: dict[str, Any], echo: dict[str, Any]) -> None:
    """Fields a Response repeats but the upstream has no use for."""
    echo["metadata"] = _metadata(present.get("metadata", {}))
    echo["max_tool_calls"] = optional_count(present.get("max_tool_calls"), "max_tool_calls")
    for key in ("safety_identifier", "prompt_cache_key"):
        echo[key] = optional_string(present.get(key), key)


def _metadata(value: Any) -> dict[str, str]:
    metadata = expect_object(value, "metadata")
    if len(metadata) > _METADATA_PAIRS:
        raise InvalidRequest(
            f"Invalid value for 'metadata': at most {_METADATA_PAIRS} pairs; got {len(metadata):,}.",
            param="metadata",
        )
    for key, text in metadata.items():
        if len(key) > _METADATA_KEY_CHARS:
            raise InvalidRequest(
                f"Invalid 'metadata': a key is over {_METADATA_KEY_CHARS} characters.", param="metadata"
            )
        if len(expect_string(text, f"metadata.{key}")) > _METADATA_VALUE_CHARS:
            raise InvalidRequest(
                f"Invalid 'metadata.{key}': over {_METADATA_VALUE_CHARS} characters.", param=f"metadata.{key}"
            )
    return metadata


def _ignored(present: dict[str, Any]) -> None:
    """Fields with no effect here, still checked for their type (a wrong one is the client's bug)."""
    for index, entry in enumerate(expect_list(present.get("include", []), "include")):
        if expect_string(entry, f"include[{index}]") == "message.output_text.logprobs":
            raise unsupported(
                f"include[{index}]", "log probabilities are not translated to chat completions."
            )
    for key in ("service_tier", "prompt_cache_retention"):
        optional_string(present.get(key), key)
    expect_object(present.get("stream_options", {}), "stream_options")
