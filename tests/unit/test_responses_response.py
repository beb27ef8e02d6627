"""A whole chat completion → a Responses ``Response`` (``gateway.responses.response``), judged by the SDK's
``Response`` type and read back by its client: statuses, output items, usage, the guardrails report."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseReasoningItem,
)

from feedback.events import ChoiceReport, GuardrailsReport, GuardReport, StageReport
from gateway.guarded.endpoints import CHAT
from gateway.responses.request import TranslatedRequest, translate_request
from gateway.responses.response import response_from_chat, usage_of
from tests.support.responses_sdk import sdk_create, validate_response

REQUEST = translate_request(
    {
        "model": "asked-model",
        "instructions": "Be brief.",
        "input": "What is the weather in Paris?",
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": False}],
        "tool_choice": "auto",
        "temperature": 0.5,
        "top_p": 0.8,
        "max_output_tokens": 100,
        "metadata": {"ticket": "T-1"},
        "user": "u-1",
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}}},
        "reasoning": {"effort": "low"},
    }
)
USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 2},
}


def completion(message: dict[str, Any], finish_reason: str | None = "stop", **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-model",
        "choices": [choice],
        **extra,
    }


def translated(body: dict[str, Any], request: TranslatedRequest = REQUEST, **options: Any) -> dict[str, Any]:
    response = response_from_chat(body, request, **options)
    validate_response(response)
    return response


def test_a_text_answer_is_a_completed_response_with_one_message() -> None:
    response = translated(
        completion({"content": "Sunny."}, usage=USAGE), response_id="resp_1", created_at=5.0
    )
    typed = validate_response(response)
    assert (typed.id, typed.object, typed.status, typed.created_at) == (
        "resp_1",
        "response",
        "completed",
        5.0,
    )
    assert typed.model == "upstream-model"  # the model that answered, as chat completions report it
    assert typed.output_text == "Sunny."
    assert "output_text" not in response  # the SDKs compute it; it is not on the wire
    [message] = typed.output
    assert isinstance(message, ResponseOutputMessage)
    assert message.id.startswith("msg_")
    assert (message.role, message.status) == ("assistant", "completed")
    assert message.content == [
        ResponseOutputText(type="output_text", text="Sunny.", annotations=[], logprobs=[])
    ]
    assert typed.incomplete_details is None
    assert typed.error is None
    assert typed.completed_at is not None


def test_the_response_repeats_the_request_settings() -> None:
    typed = validate_response(translated(completion({"content": "x"})))
    assert typed.instructions == "Be brief."
    assert (typed.temperature, typed.top_p, typed.max_output_tokens) == (0.5, 0.8, 100)
    assert typed.metadata == {"ticket": "T-1"}
    assert typed.user == "u-1"
    assert typed.tool_choice == "auto"
    assert typed.parallel_tool_calls is True
    [tool] = typed.tools
    assert (tool.type, tool.name, tool.strict) == ("function", "weather", False)
    assert typed.text is not None
    assert typed.text.format is not None
    assert typed.text.format.type == "json_schema"
    assert typed.reasoning is not None
    assert typed.reasoning.effort == "low"
    assert typed.previous_response_id is None
    assert typed.truncation == "disabled"


def test_usage_is_in_the_responses_names() -> None:
    typed = validate_response(translated(completion({"content": "x"}, usage=USAGE)))
    assert typed.usage is not None
    assert (typed.usage.input_tokens, typed.usage.output_tokens, typed.usage.total_tokens) == (12, 5, 17)
    assert typed.usage.input_tokens_details.cached_tokens == 4
    assert typed.usage.output_tokens_details.reasoning_tokens == 2
    assert translated(completion({"content": "x"}))["usage"] is None


def test_an_estimated_usage_still_says_so() -> None:
    usage = usage_of({"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "estimated": True})
    assert usage is not None
    assert usage["estimated"] is True
    assert usage_of({"prompt_tokens": "3", "completion_tokens": -1})["input_tokens"] == 0  # type: ignore[index]


def test_a_cut_answer_is_incomplete_for_max_output_tokens() -> None:
    typed = validate_response(translated(completion({"content": "The weather in Par"}, "length")))
    assert typed.status == "incomplete"
    assert typed.incomplete_details is not None
    assert typed.incomplete_details.reason == "max_output_tokens"
    assert typed.output[0].status == "incomplete"
    assert typed.completed_at is None


def test_an_output_guards_block_is_a_refusal_and_incomplete_for_content_filter() -> None:
    """The chat path refuses a blocked choice (content dropped, a refusal, content_filter): the Response
    says so the Responses way."""
    body = completion(
        {"content": "toxic words", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]}
    )
    assert CHAT.answer is not None
    CHAT.answer.refuse(body["choices"][0], "This answer was blocked by the gateway's guards.")
    typed = validate_response(translated(body))
    assert typed.status == "incomplete"
    assert typed.incomplete_details is not None
    assert typed.incomplete_details.reason == "content_filter"
    [message] = typed.output
    assert isinstance(message, ResponseOutputMessage)
    assert message.content == [
        ResponseOutputRefusal(type="refusal", refusal="This answer was blocked by the gateway's guards.")
    ]
    assert typed.output_text == ""  # nothing of the blocked text, nor of its tool call, is left


def test_the_models_own_refusal_follows_its_text() -> None:
    typed = validate_response(translated(completion({"content": "Partly", "refusal": "I can't say more."})))
    assert typed.status == "completed"
    assert [part.type for part in typed.output[0].content] == ["output_text", "refusal"]  # type: ignore[union-attr]


def test_tool_calls_are_function_call_items() -> None:
    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
        },
        {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
    ]
    typed = validate_response(translated(completion({"content": None, "tool_calls": calls}, "tool_calls")))
    assert typed.status == "completed"
    assert all(isinstance(item, ResponseFunctionToolCall) for item in typed.output)  # no empty message
    assert [(c.call_id, c.name, c.arguments, c.status) for c in typed.output] == [  # type: ignore[union-attr]
        ("call_a", "weather", '{"city":"Paris"}', "completed"),
        ("call_b", "weather", '{"city":"Rome"}', "completed"),
    ]
    assert all(item.id and item.id.startswith("fc_") for item in typed.output)


def test_text_then_tool_calls_and_only_the_last_item_is_cut() -> None:
    calls = [{"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"ci'}}]
    typed = validate_response(translated(completion({"content": "Looking.", "tool_calls": calls}, "length")))
    assert [(item.type, item.status) for item in typed.output] == [
        ("message", "completed"),
        ("function_call", "incomplete"),
    ]


def test_a_call_without_an_id_gets_one_and_a_legacy_function_call_is_translated() -> None:
    calls = [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]
    typed = validate_response(translated(completion({"tool_calls": calls, "function_call": {"name": "g"}})))
    assert [item.type for item in typed.output] == ["function_call", "function_call"]
    assert typed.output[0].call_id.startswith("call_")  # type: ignore[union-attr]
    assert (typed.output[1].name, typed.output[1].arguments) == ("g", "")  # type: ignore[union-attr]


def test_reasoning_comes_first_as_a_reasoning_item() -> None:
    typed = validate_response(translated(completion({"content": "4", "reasoning_content": "2+2 is 4"})))
    reasoning, message = typed.output
    assert isinstance(message, ResponseOutputMessage)
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.id.startswith("rs_")
    assert reasoning.content is not None
    assert reasoning.content[0].text == "2+2 is 4"
    assert reasoning.summary == []
    assert typed.output_text == "4"


def test_an_empty_answer_still_has_a_message() -> None:
    for message in ({"content": ""}, {"content": None}, {}):
        typed = validate_response(translated(completion(message)))
        assert [item.type for item in typed.output] == ["message"]
        assert typed.output_text == ""


def test_only_choice_zero_is_translated() -> None:
    body = completion({"content": "zero"})
    body["choices"].insert(
        0, {"index": 1, "message": {"role": "assistant", "content": "one"}, "finish_reason": "stop"}
    )
    assert validate_response(translated(body)).output_text == "zero"


def test_the_request_model_stands_in_when_the_upstream_names_none() -> None:
    body = completion({"content": "x"})
    del body["model"]
    assert translated(body)["model"] == "asked-model"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"choices": None},
        {"choices": "x"},
        {"choices": [5, "x", None]},
        {"choices": [{"index": 0, "message": "x"}]},
        {"choices": [{"index": 0, "message": {"content": 5, "refusal": 7, "tool_calls": "x"}}]},
        {"choices": [{"index": 0, "message": {"tool_calls": [5, {"function": "x"}, {"type": "custom"}]}}]},
        {
            "choices": [{"index": 0, "message": {"content": [{"type": "text", "text": "parts"}]}}],
            "usage": "x",
        },
        {"choices": [{"index": 0, "finish_reason": ["length"], "message": {"function_call": {"name": 5}}}]},
    ],
)
def test_a_malformed_completion_still_makes_a_valid_response(body: dict[str, Any]) -> None:
    """The relay checks upstream answers' shapes (``gateway.relay.upstream_shapes``); this builder does not
    rely on it, so no answer can crash it."""
    translated(body)


def test_the_guardrails_report_rides_on_the_response() -> None:
    report = GuardrailsReport(
        policy="default",
        input=StageReport(decision="pass", guards=[]),
        output=[
            ChoiceReport(
                index=0,
                decision="block",
                guards=[GuardReport(guard="toxicity", action="block", decision="block")],
            )
        ],
    )
    response = translated(completion({"content": "x"}, guardrails=report))
    assert response["guardrails"] is report  # as the chat path made it, encoded with the rest
    wire = msgspec.json.decode(msgspec.json.encode(response))
    assert wire["guardrails"]["output"][0]["guards"][0]["guard"] == "toxicity"
    assert "guardrails" not in translated(completion({"content": "x"}))


async def test_the_sdk_client_reads_the_response() -> None:
    report = GuardrailsReport(policy="default", output=[ChoiceReport(index=0, decision="pass", guards=[])])
    body = completion({"content": "Sunny.", "reasoning_content": "look"}, usage=USAGE, guardrails=report)
    typed = await sdk_create(msgspec.json.encode(response_from_chat(body, REQUEST)))
    assert typed.output_text == "Sunny."
    assert typed.usage is not None
    assert typed.usage.total_tokens == 17
    assert typed.model_extra is not None
    assert typed.model_extra["guardrails"]["policy"] == "default"


ECHOED = [
    {"tool_choice": "required"},
    {"tool_choice": {"type": "function", "name": "weather"}},
    {
        "tool_choice": {
            "type": "allowed_tools",
            "mode": "auto",
            "tools": [{"type": "function", "name": "weather"}],
        }
    },
    {"text": {"format": {"type": "json_object"}, "verbosity": "high"}},
    {
        "text": {
            "format": {"type": "json_schema", "name": "n", "schema": {}, "description": "d", "strict": True}
        }
    },
    {"reasoning": {"effort": "minimal", "summary": "auto"}},
    {"parallel_tool_calls": False, "max_tool_calls": 2, "safety_identifier": "s", "prompt_cache_key": "k"},
    {"instructions": None, "metadata": None, "tools": None},
]


@pytest.mark.parametrize("fields", ECHOED)
def test_every_repeated_setting_is_valid_for_the_sdk(fields: dict[str, Any]) -> None:
    tools = [{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": True}]
    request = translate_request({"model": "m", "input": "Hi", "tools": tools, **fields})
    typed = validate_response(translated(completion({"content": "x"}), request))
    for key, value in fields.items():
        if value is not None and key != "reasoning":
            assert typed.model_dump(mode="json", exclude_none=True, by_alias=True)[key] == value
