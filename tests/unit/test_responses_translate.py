"""A Responses request → a chat-completions body (``gateway.responses.request``, ``gateway.responses.items``):
every translated field and item type, every refusal (a 400 naming the parameter), and the attacks: hostile
shapes, huge counts, deep nesting, text that would slip past the chat path's guards."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses.response_create_params import ResponseCreateParamsStreaming

from gateway.errors import BodyTooLarge, InvalidRequest
from gateway.guarded.request import GATEWAY_FIELDS as GUARDED_PATH_FIELDS
from gateway.guarded.text_slots import chat_request_slots
from gateway.limits import LimitsSettings, check_input_budget
from gateway.protocol import check_chat
from gateway.responses.request import FIELDS, GATEWAY_FIELDS, TranslatedRequest, translate_request

API_PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def translate(**fields: Any) -> TranslatedRequest:
    return translate_request({"model": "m", **fields})


def refusal(raw: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        translate_request(raw)
    assert raised.value.status_code in (400, 413)
    assert raised.value.envelope()["error"]["type"] == "invalid_request_error"
    return raised.value


def messages(**fields: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = translate(**fields).chat["messages"]
    return messages


# --- happy paths: every field and item type -------------------------------------------------------


def test_a_string_input_is_one_user_message() -> None:
    translated = translate(input="What is 2+2?")
    assert translated.chat == {"model": "m", "messages": [{"role": "user", "content": "What is 2+2?"}]}
    assert translated.model == "m"
    assert translated.stream is False


def test_instructions_come_first_as_a_system_message() -> None:
    assert messages(instructions="Be brief.", input="Hi") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert messages(instructions="Only instructions.") == [
        {"role": "system", "content": "Only instructions."}
    ]


def test_message_items_of_every_role() -> None:
    found = messages(
        input=[
            {"role": "system", "content": "S"},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "D"}]},
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "U1"}, {"type": "input_text", "text": "U2"}],
            },
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "A", "annotations": [], "logprobs": []},
                    {"type": "refusal", "refusal": "R"},
                ],
            },
        ]
    )
    assert found == [
        {"role": "system", "content": "S"},
        {"role": "system", "content": "D"},  # chat servers but OpenAI's know no developer role
        {"role": "user", "content": [{"type": "text", "text": "U1"}, {"type": "text", "text": "U2"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "A"}, {"type": "refusal", "refusal": "R"}],
        },
    ]


def test_an_input_image_is_an_image_url_part() -> None:
    content = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "https://example.test/a.png", "detail": "low"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "original"},
    ]
    assert messages(input=[{"role": "user", "content": content}])[0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.test/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},  # no chat equivalent
    ]


def test_function_calls_join_the_assistant_message_before_them_and_outputs_are_tool_messages() -> None:
    found = messages(
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Let me look."},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "id": "fc_2", "call_id": "c2", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "18C"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "21C"}],
            },
        ]
    )
    assert found[1:] == [
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "tool", "tool_call_id": "c2", "content": "21C"},
    ]


def test_a_function_call_after_a_user_message_opens_an_assistant_message() -> None:
    found = messages(
        input=[
            {"role": "user", "content": "Hi"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}],
            },
        ]
    )
    assert found[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }
    assert found[2]["content"] == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]


def test_reasoning_items_sent_back_by_agents_are_left_out() -> None:
    reasoning = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "x"}],
    }
    assert messages(input=[{"role": "user", "content": "Hi"}, reasoning]) == [
        {"role": "user", "content": "Hi"}
    ]


def test_function_tools_are_nested_for_chat_and_kept_whole_for_the_response() -> None:
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    translated = translate(
        input="Hi",
        tools=[
            {
                "type": "function",
                "name": "weather",
                "description": "Look it up",
                "parameters": parameters,
                "strict": True,
            },
            {"type": "function", "name": "bare", "parameters": None, "strict": None, "defer_loading": False},
        ],
        parallel_tool_calls=False,
    )
    assert translated.chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Look it up",
                "parameters": parameters,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "bare"}},
    ]
    assert translated.chat["parallel_tool_calls"] is False
    assert translated.echo["tools"][1] == {
        "type": "function",
        "name": "bare",
        "description": None,
        "parameters": None,
        "strict": None,
    }
    assert translated.echo["parallel_tool_calls"] is False


TOOLS = [{"type": "function", "name": name} for name in ("a", "b", "c")]


@pytest.mark.parametrize(
    ("tool_choice", "chat_choice", "sent"),
    [
        ("none", "none", ["a", "b", "c"]),
        ("auto", "auto", ["a", "b", "c"]),
        ("required", "required", ["a", "b", "c"]),
        ({"type": "function", "name": "b"}, {"type": "function", "function": {"name": "b"}}, ["a", "b", "c"]),
        (
            {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "c"}]},
            "required",
            ["c"],
        ),
    ],
)
def test_tool_choice(tool_choice: Any, chat_choice: Any, sent: list[str]) -> None:
    translated = translate(input="Hi", tools=TOOLS, tool_choice=tool_choice)
    assert translated.chat["tool_choice"] == chat_choice
    assert [tool["function"]["name"] for tool in translated.chat["tools"]] == sent
    assert translated.echo["tool_choice"] == tool_choice  # the Response repeats what was asked


def test_allowed_tools_keep_the_other_tools_from_the_model() -> None:
    """Only the allowed tools are sent, so no chat server can call one the client ruled out."""
    choice = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "a"}]}
    translated = translate(input="Hi", tools=TOOLS, tool_choice=choice)
    assert translated.chat["tools"] == [{"type": "function", "function": {"name": "a"}}]
    assert translated.param_of("tools[0].function.name") == "tools[0].name"


def test_sampling_fields() -> None:
    translated = translate(input="Hi", max_output_tokens=64, temperature=0.2, top_p=0.9, user="u-1")
    assert translated.chat == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u-1",
    }
    assert {key: translated.echo[key] for key in ("max_output_tokens", "temperature", "top_p", "user")} == {
        "max_output_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u-1",
    }


def test_a_stream_asks_the_upstream_for_usage() -> None:
    translated = translate(input="Hi", stream=True)
    assert translated.stream is True
    assert translated.chat["stream_options"] == {"include_usage": True}
    assert "stream" not in translate(input="Hi", stream=False).chat


def test_text_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    json_schema = {
        "type": "json_schema",
        "name": "answer",
        "schema": schema,
        "description": "D",
        "strict": True,
    }
    translated = translate(input="Hi", text={"format": json_schema, "verbosity": "low"})
    assert translated.chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "description": "D", "strict": True},
    }
    assert translated.chat["verbosity"] == "low"
    assert translated.echo["text"] == {"format": json_schema, "verbosity": "low"}
    assert translate(input="Hi", text={"format": {"type": "json_object"}}).chat["response_format"] == {
        "type": "json_object"
    }
    plain = translate(input="Hi", text={"format": {"type": "text"}})
    assert "response_format" not in plain.chat
    assert plain.echo["text"] == {"format": {"type": "text"}}


def test_reasoning_effort_is_passed_and_the_summary_ignored() -> None:
    translated = translate(input="Hi", reasoning={"effort": "high", "summary": "auto"})
    assert translated.chat["reasoning_effort"] == "high"
    assert translated.echo["reasoning"] == {"effort": "high"}  # no summary is made, so none is claimed
    assert "reasoning_effort" not in translate(input="Hi", reasoning={"summary": "concise"}).chat


def test_metadata_and_identifiers_are_kept_on_the_response_not_sent_upstream() -> None:
    translated = translate(
        input="Hi",
        metadata={"ticket": "T-1"},
        safety_identifier="sid",
        prompt_cache_key="pck",
        max_tool_calls=3,
    )
    assert set(translated.chat) == {"model", "messages"}
    assert translated.echo["metadata"] == {"ticket": "T-1"}
    assert (translated.echo["safety_identifier"], translated.echo["prompt_cache_key"]) == ("sid", "pck")
    assert translated.echo["max_tool_calls"] == 3


def test_harmless_fields_are_ignored() -> None:
    translated = translate(
        input="Hi",
        include=["reasoning.encrypted_content", "file_search_call.results"],
        service_tier="flex",
        prompt_cache_retention="24h",
        stream_options={"include_obfuscation": False},
        store=False,
        background=False,
        truncation="disabled",
    )
    assert set(translated.chat) == {"model", "messages"}


def test_the_gateways_own_fields_reach_the_chat_path() -> None:
    assert GATEWAY_FIELDS == GUARDED_PATH_FIELDS  # kept equal by hand: this package may not import that one
    options = {"mode": "strict"}
    sources = [{"id": "s1", "text": "A source."}]
    translated = translate(input="Hi", guardrails=options, sources=sources)
    assert translated.chat["guardrails"] is options
    assert translated.chat["sources"] is sources


def test_null_is_absent() -> None:
    fields = dict.fromkeys(("instructions", "tools", "tool_choice", "text", "reasoning", "metadata"))
    translated = translate(input="Hi", previous_response_id=None, store=None, temperature=None, **fields)
    assert translated.chat == {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    assert translated.echo["tool_choice"] == "auto"
    assert translated.echo["parallel_tool_calls"] is True


def test_the_clients_request_is_not_changed() -> None:
    raw = {
        "model": "m",
        "instructions": "I",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "x"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        ],
        "tools": TOOLS,
        "tool_choice": {
            "type": "allowed_tools",
            "mode": "auto",
            "tools": [{"type": "function", "name": "a"}],
        },
        "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}},
    }
    before = copy.deepcopy(raw)
    translate_request(raw)
    assert raw == before


def test_the_chat_body_passes_the_chat_paths_own_check() -> None:
    translated = translate(
        instructions="I",
        input=[
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "x"}, {"type": "input_image", "image_url": "u"}],
            },
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "ok"},
        ],
        tools=[{"type": "function", "name": "f"}],
        max_output_tokens=10,
        stream=True,
    )
    checked = check_chat(translated.chat)
    assert [message.role for message in checked.messages] == ["system", "user", "assistant", "tool"]
    assert checked.max_tokens == 10
    assert checked.stream_options is not None
    assert checked.stream_options.include_usage


# --- every field has a fate, and the API page says it -----------------------------------------------


def test_every_parameter_the_sdk_knows_has_a_fate() -> None:
    assert set(FIELDS) == set(ResponseCreateParamsStreaming.__annotations__)


def test_the_api_page_table_lists_every_parameter() -> None:
    text = API_PAGE.read_text()
    section = text[text.index("## The Responses API") : text.index("## Errors")]
    first_cells = re.findall(r"^\| ([^|]+)\|", section, re.M)
    named = {name for cell in first_cells for name in re.findall(r"`([a-z_]+)`", cell)}
    assert set(FIELDS) <= named


# --- refusals: a 400 naming the parameter ---------------------------------------------------------

REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"input": "Hi"}, "model"),  # no model
    ({"model": "", "input": "Hi"}, "model"),
    ({"model": 5, "input": "Hi"}, "model"),
    ({"model": "m"}, "input"),  # nothing to answer
    ({"model": "m", "input": []}, "input"),
    ({"model": "m", "input": "Hi", "n": 2}, "n"),
    ({"model": "m", "input": "Hi", "messages": []}, "messages"),
    ({"model": "m", "input": "Hi", "frobnicate": True}, "frobnicate"),
    ({"model": "m", "input": "Hi", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"model": "m", "input": "Hi", "conversation": "conv_1"}, "conversation"),
    ({"model": "m", "input": "Hi", "prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"model": "m", "input": "Hi", "store": True}, "store"),
    ({"model": "m", "input": "Hi", "background": True}, "background"),
    ({"model": "m", "input": "Hi", "truncation": "auto"}, "truncation"),
    ({"model": "m", "input": "Hi", "truncation": "sometimes"}, "truncation"),
    ({"model": "m", "input": "Hi", "top_logprobs": 2}, "top_logprobs"),
    ({"model": "m", "input": "Hi", "include": ["message.output_text.logprobs"]}, "include[0]"),
    ({"model": "m", "input": "Hi", "context_management": [{"type": "compaction"}]}, "context_management"),
    ({"model": "m", "input": "Hi", "moderation": {"model": "omni-moderation-latest"}}, "moderation"),
    ({"model": "m", "input": "Hi", "access_programs": {"cyber": "standard"}}, "access_programs"),
    ({"model": "m", "input": "Hi", "image": {"context_compression": "auto"}}, "image"),
    ({"model": "m", "input": "Hi", "background_options": {}}, "background_options"),
    ({"model": "m", "input": "Hi", "prompt_cache_options": {"ttl": "30m"}}, "prompt_cache_options"),
    ({"model": "m", "input": "Hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "m", "input": "Hi", "max_output_tokens": "10"}, "max_output_tokens"),
    ({"model": "m", "input": "Hi", "max_output_tokens": True}, "max_output_tokens"),
    ({"model": "m", "input": "Hi", "max_output_tokens": 1.5}, "max_output_tokens"),
    ({"model": "m", "input": "Hi", "temperature": 3}, "temperature"),
    ({"model": "m", "input": "Hi", "temperature": "hot"}, "temperature"),
    ({"model": "m", "input": "Hi", "top_p": 1.5}, "top_p"),
    ({"model": "m", "input": "Hi", "stream": "yes"}, "stream"),
    ({"model": "m", "input": "Hi", "user": 7}, "user"),
    ({"model": "m", "input": "Hi", "parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"model": "m", "input": "Hi", "text": {"format": {"type": "xml"}}}, "text.format.type"),
    (
        {"model": "m", "input": "Hi", "text": {"format": {"type": "json_schema", "schema": {}}}},
        "text.format.name",
    ),
    (
        {"model": "m", "input": "Hi", "text": {"format": {"type": "json_schema", "name": "n"}}},
        "text.format.schema",
    ),
    ({"model": "m", "input": "Hi", "text": {"verbosity": "loud"}}, "text.verbosity"),
    ({"model": "m", "input": "Hi", "text": "json"}, "text"),
    ({"model": "m", "input": "Hi", "text": {"tone": "warm"}}, "text.tone"),
    ({"model": "m", "input": "Hi", "text": {"format": {"type": "text", "x": 1}}}, "text.format.x"),
    ({"model": "m", "input": "Hi", "reasoning": {"effort": "ultra"}}, "reasoning.effort"),
    ({"model": "m", "input": "Hi", "reasoning": {"mode": "pro"}}, "reasoning.mode"),
    ({"model": "m", "input": "Hi", "reasoning": {"summary": "long"}}, "reasoning.summary"),
    ({"model": "m", "input": "Hi", "reasoning": "high"}, "reasoning"),
    ({"model": "m", "input": "Hi", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"model": "m", "input": "Hi", "metadata": {"k" * 65: "v"}}, "metadata"),
    ({"model": "m", "input": "Hi", "metadata": {"k": "v" * 513}}, "metadata.k"),
    ({"model": "m", "input": "Hi", "metadata": {"k": 1}}, "metadata.k"),
    ({"model": "m", "input": "Hi", "include": "all"}, "include"),
    ({"model": "m", "input": "Hi", "service_tier": 1}, "service_tier"),
    ({"model": "m", "input": "Hi", "stream_options": []}, "stream_options"),
    ({"model": "m", "input": "Hi", "instructions": ["I"]}, "instructions"),
]


@pytest.mark.parametrize(("raw", "param"), REFUSED, ids=[param for _, param in REFUSED])
def test_refused_with_the_parameter_named(raw: dict[str, Any], param: str) -> None:
    error = refusal(raw)
    assert error.status_code == 400
    assert error.param == param
    assert f"'{param}'" in error.message


HOSTED_TOOLS = [
    {"type": "web_search"},
    {"type": "web_search_preview"},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "computer_use_preview", "display_width": 1, "display_height": 1, "environment": "browser"},
    {"type": "code_interpreter", "container": "auto"},
    {"type": "image_generation"},
    {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.example.test"},
    {"type": "local_shell"},
    {"type": "custom", "name": "grammar"},
    {"type": "namespace", "name": "ns", "tools": []},
]


@pytest.mark.parametrize("tool", HOSTED_TOOLS, ids=[tool["type"] for tool in HOSTED_TOOLS])
def test_built_in_tools_are_refused(tool: dict[str, Any]) -> None:
    error = refusal({"model": "m", "input": "Hi", "tools": [{"type": "function", "name": "f"}, tool]})
    assert (error.param, error.code) == ("tools[1].type", "unsupported_value")
    assert "/v1/responses" in error.message


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"type": "function"}, "tools[0].name"),
        ({"type": "function", "name": ""}, "tools[0].name"),
        ({"name": "f"}, "tools[0].type"),
        ({"type": "function", "name": "f", "parameters": "{}"}, "tools[0].parameters"),
        ({"type": "function", "name": "f", "strict": "yes"}, "tools[0].strict"),
        ({"type": "function", "name": "f", "description": 5}, "tools[0].description"),
        ({"type": "function", "name": "f", "defer_loading": True}, "tools[0].defer_loading"),
        ({"type": "function", "name": "f", "allowed_callers": ["programmatic"]}, "tools[0].allowed_callers"),
        ("f", "tools[0]"),
    ],
)
def test_malformed_function_tools(tool: Any, param: str) -> None:
    assert refusal({"model": "m", "input": "Hi", "tools": [tool]}).param == param


@pytest.mark.parametrize(
    ("tool_choice", "param"),
    [
        ("sometimes", "tool_choice"),
        ({"type": "web_search_preview"}, "tool_choice.type"),
        ({"type": "function", "name": "missing"}, "tool_choice.name"),
        ({"type": "function"}, "tool_choice.name"),
        ({"type": "allowed_tools", "mode": "always", "tools": []}, "tool_choice.mode"),
        ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "mcp"}]}, "tool_choice.tools[0].type"),
        (
            {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "x"}]},
            "tool_choice.tools[0].name",
        ),
        ({"type": "allowed_tools", "mode": "auto", "tools": "a"}, "tool_choice.tools"),
        ({"type": "allowed_tools", "mode": "auto", "tools": []}, "tool_choice.tools"),
        (5, "tool_choice"),
    ],
)
def test_malformed_tool_choice(tool_choice: Any, param: str) -> None:
    assert refusal({"model": "m", "input": "Hi", "tools": TOOLS, "tool_choice": tool_choice}).param == param


ITEMS_REFUSED: list[tuple[Any, str]] = [
    ({"role": "tool", "content": "x"}, "input[0].role"),
    ({"type": "message", "content": "x"}, "input[0].role"),
    ({"content": "x"}, "input[0].type"),
    ({"type": "note", "text": "sneaky"}, "input[0].type"),
    ({"type": 5}, "input[0].type"),
    ({"role": "user", "content": None}, "input[0].content"),
    ({"role": "user", "content": 5}, "input[0].content"),
    ({"role": "user", "content": {"type": "input_text", "text": "x"}}, "input[0].content"),
    ({"role": "user", "content": []}, "input[0].content"),
    ({"role": "user", "content": [5]}, "input[0].content[0]"),
    ({"role": "user", "content": [{}]}, "input[0].content[0].type"),
    ({"role": "user", "content": [{"type": "input_text"}]}, "input[0].content[0].text"),
    ({"role": "user", "content": [{"type": "input_text", "text": ["x"]}]}, "input[0].content[0].text"),
    (
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA"}}]},
        "input[0].content[0].type",
    ),
    ({"role": "user", "content": [{"type": "input_file", "file_data": "JVBERi0="}]}, "input[0].content[0]"),
    (
        {"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]},
        "input[0].content[0].file_id",
    ),
    (
        {"role": "user", "content": [{"type": "input_image", "detail": "auto"}]},
        "input[0].content[0].image_url",
    ),
    ({"role": "system", "content": [{"type": "input_image", "image_url": "u"}]}, "input[0].content[0].type"),
    ({"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}, "input[0].content[0].type"),
    ({"type": "function_call", "name": "f", "arguments": "{}"}, "input[0].call_id"),
    ({"type": "function_call", "call_id": "c", "arguments": "{}"}, "input[0].name"),
    ({"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}, "input[0].arguments"),
    ({"type": "function_call_output", "output": "x"}, "input[0].call_id"),
    ({"type": "function_call_output", "call_id": "c"}, "input[0].output"),
    ({"type": "function_call_output", "call_id": "c", "output": []}, "input[0].output"),
    (
        {
            "type": "function_call_output",
            "call_id": "c",
            "output": [{"type": "input_image", "image_url": "u"}],
        },
        "input[0].output[0].type",
    ),
    ({"type": "item_reference", "id": "msg_1"}, "input[0].type"),
    ({"type": "web_search_call", "id": "ws_1", "status": "completed"}, "input[0].type"),
    ({"type": "mcp_call", "id": "m", "arguments": "{}", "name": "n", "server_label": "s"}, "input[0].type"),
    ({"type": "computer_call_output", "call_id": "c", "output": {}}, "input[0].type"),
    ({"type": "custom_tool_call_output", "call_id": "c", "output": "x"}, "input[0].type"),
    (5, "input[0]"),
    ("Hi", "input[0]"),
    ([{"role": "user", "content": "x"}], "input[0]"),
    (None, "input[0]"),
]


@pytest.mark.parametrize(
    ("item", "param"), ITEMS_REFUSED, ids=[param + repr(item)[:40] for item, param in ITEMS_REFUSED]
)
def test_malformed_or_untranslatable_items(item: Any, param: str) -> None:
    error = refusal({"model": "m", "input": [item]})
    assert error.param == param
    assert f"'{param}" in error.message


def test_the_error_is_openai_shaped() -> None:
    envelope = refusal({"model": "m", "input": "Hi", "previous_response_id": "resp_1"}).envelope()
    assert envelope["error"]["param"] == "previous_response_id"
    assert envelope["error"]["code"] == "unsupported_parameter"
    assert "no conversation state" in envelope["error"]["message"]


# --- attacks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [5, True, {"role": "user", "content": "x"}, 1.5])
def test_hostile_input_of_the_wrong_kind_is_a_400(value: Any) -> None:
    error = refusal({"model": "m", "input": value})
    assert error.param == "input"


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]  # built in a loop: no recursion here either
    return value


@pytest.mark.parametrize(
    "raw",
    [
        {"model": "m", "input": _nested(100_000)},
        {"model": "m", "input": [{"role": "user", "content": _nested(100_000)}]},
        {
            "model": "m",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": _nested(100_000)}]}],
        },
        {
            "model": "m",
            "input": [{"type": "function_call_output", "call_id": "c", "output": _nested(100_000)}],
        },
        {"model": "m", "input": "Hi", "metadata": {"k": _nested(100_000)}},
        {
            "model": "m",
            "input": "Hi",
            "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": _nested(100_000)},
        },
    ],
)
def test_deep_nesting_is_a_400_never_a_stack_overflow(raw: dict[str, Any]) -> None:
    assert refusal(raw).status_code == 400


def test_deep_nesting_inside_a_schema_is_passed_on_not_walked() -> None:
    """A tool's JSON schema is the upstream's to read: the translation hands it on untouched (the body's
    depth limit, ``limits.max_json_depth``, bounds it before the translation ever runs)."""
    deep = {"type": "object", "properties": {"x": _nested(100_000)}}
    translated = translate(input="Hi", tools=[{"type": "function", "name": "f", "parameters": deep}])
    assert translated.chat["tools"][0]["function"]["parameters"] is deep


def test_a_huge_item_list_is_refused_before_any_item_is_read() -> None:
    error = refusal({"model": "m", "input": [5] * 1_001})  # garbage items: the count is refused first
    assert isinstance(error, BodyTooLarge)
    assert (error.status_code, error.code, error.param) == (413, "input_too_large", "input")
    assert "limits.max_input_texts" in error.message


def test_huge_part_and_tool_lists_are_refused() -> None:
    parts = [{"type": "input_text", "text": "x"}] * 1_001
    assert refusal({"model": "m", "input": [{"role": "user", "content": parts}]}).param == "input[0].content"
    tools = [{"type": "function", "name": f"f{i}"} for i in range(1_001)]
    assert refusal({"model": "m", "input": "Hi", "tools": tools}).param == "tools"


def test_the_budget_follows_the_gateways_limits() -> None:
    raw = {"model": "m", "input": [{"role": "user", "content": "x"}] * 11}
    with pytest.raises(BodyTooLarge):
        translate_request(raw, LimitsSettings(max_input_texts=10))
    assert len(translate_request(raw, LimitsSettings(max_input_texts=11)).chat["messages"]) == 11


def test_what_the_chat_paths_text_budget_accepts_is_not_refused_here() -> None:
    limits = LimitsSettings(max_input_texts=1_000)
    two_parts = {
        "role": "user",
        "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}],
    }
    for items in ([{"role": "user", "content": "x"}] * 1_000, [two_parts] * 500):
        translated = translate_request({"model": "m", "input": items}, limits)
        check_input_budget([slot.text for slot in chat_request_slots(translated.chat)], limits, "messages")


def test_a_huge_function_call_output_reaches_the_chat_paths_budget_whole() -> None:
    """The translation copies no text: a 5 MB tool output becomes the tool message the chat path counts
    (and refuses, 413), never a crash here and never a truncated text the guards would judge instead."""
    huge = "A" * 5_000_000
    translated = translate(input=[{"type": "function_call_output", "call_id": "c", "output": huge}])
    assert translated.chat["messages"][0]["content"] is huge
    with pytest.raises(BodyTooLarge) as raised:
        check_input_budget(
            [slot.text for slot in chat_request_slots(translated.chat)], LimitsSettings(), "messages"
        )
    assert raised.value.code == "input_too_large"


# Text in every place a Responses request carries it: each must reach a chat guard slot.
MARKED = {
    "model": "m",
    "instructions": "T-instructions",
    "user": "T-user",
    "input": [
        {"role": "system", "content": "T-system"},
        {"role": "developer", "content": [{"type": "input_text", "text": "T-developer"}]},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "T-user-1"},
                {"type": "input_image", "image_url": "u"},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "T-user-2"},
                {"type": "input_text", "text": "T-user-3"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "T-assistant"},
                {"type": "refusal", "refusal": "T-refusal"},
            ],
        },
        {"type": "function_call", "call_id": "c1", "name": "T-name", "arguments": "T-arguments"},
        {"type": "function_call_output", "call_id": "c1", "output": "T-output"},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [{"type": "input_text", "text": "T-output-part"}],
        },
        {"role": "user", "content": "T-last"},
    ],
    "tools": [
        {
            "type": "function",
            "name": "T-tool",
            "description": "T-tool-description",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "T-property"}},
            },
        }
    ],
    "tool_choice": {"type": "function", "name": "T-tool"},
    "text": {
        "format": {
            "type": "json_schema",
            "name": "T-format",
            "description": "T-format-description",
            "schema": {"description": "T-schema"},
        }
    },
}


def test_every_text_of_the_request_reaches_a_guard_slot() -> None:
    """The bypass test: no text of a Responses request reaches the model without the input guards seeing
    it, wherever it was put."""
    translated = translate_request(MARKED)
    guarded = {slot.text for slot in chat_request_slots(translated.chat)}
    marked = set(re.findall(r"T-[a-z0-9-]+", repr(MARKED)))
    assert len(marked) == 20
    assert marked <= guarded


_STEP = re.compile(r"\.?([A-Za-z_][\w-]*)|\[(\d+)\]")


def _at(document: Any, path: str) -> Any:
    for name, index in _STEP.findall(path):
        document = document[name] if name else document[int(index)]
    return document


def test_every_guard_slot_names_the_parameter_it_came_from() -> None:
    """An input block's error and the report's spans can name what the client sent, not the chat body."""
    translated = translate_request(MARKED)
    slots = chat_request_slots(translated.chat)
    named = {slot.where: translated.param_of(slot.where) for slot in slots}
    for slot in slots:
        assert _at(MARKED, named[slot.where]) == slot.text, slot.where
    assert named["messages[0].content"] == "instructions"
    assert named["messages[2].content"] == "input[1].content[0].text"
    assert named["messages[3].content[0].text"] == "input[2].content[0].text"
    assert named["messages[5].content[1].refusal"] == "input[4].content[1].refusal"
    assert named["messages[5].tool_calls[0].function.arguments"] == "input[5].arguments"
    assert named["messages[6].content"] == "input[6].output"
    assert named["messages[7].content"] == "input[7].output[0].text"
    assert named["tools[0].function.parameters.properties.city.description"] == (
        "tools[0].parameters.properties.city.description"
    )
    assert named["response_format.json_schema.schema.description"] == "text.format.schema.description"
    assert named["user"] == "user"
    assert translated.param_of("messages[5]") == "input[4]"  # a whole message: its item


def test_a_string_input_is_named_input() -> None:
    assert translate(input="Hi").param_of("messages[0].content") == "input"


HUGE = "x" * 100_000


@pytest.mark.parametrize(
    "raw",
    [
        {"model": "m", "input": "Hi", HUGE: 1},
        {"model": "m", "input": [{"type": HUGE}]},
        {"model": "m", "input": [{"role": "user", "content": [{"type": HUGE}]}]},
        {"model": "m", "input": [{"role": HUGE, "content": "x"}]},
        {"model": "m", "input": "Hi", "tools": [{"type": HUGE}]},
        {"model": "m", "input": "Hi", "tools": [{"type": "function", "name": "f", HUGE: True}]},
        {"model": "m", "input": "Hi", "tool_choice": HUGE},
        {"model": "m", "input": "Hi", "tool_choice": {"type": HUGE}},
        {"model": "m", "input": "Hi", "tools": TOOLS, "tool_choice": {"type": "function", "name": HUGE}},
    ],
)
def test_a_huge_value_is_not_echoed_back_in_the_error(raw: dict[str, Any]) -> None:
    envelope = refusal(raw).envelope()["error"]
    assert len(envelope["message"]) < 600
    assert envelope["param"] is None or len(envelope["param"]) < 100
