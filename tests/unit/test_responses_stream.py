"""A chat-completions stream → Responses stream events (``gateway.responses.stream``), event by event (order,
sequence numbers, indexes), every event judged by the SDK's own class for its type, and the whole stream
read by the SDK's stream helper (``client.responses.stream``), which assembles the final Response. The
guarded chat path's real stream guard feeds some of them: what it blocks never reaches a Responses client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec
import pytest
from openai.types.responses import ResponseIncompleteEvent

from gateway.errors import GatewayError, UpstreamStreamBroken
from gateway.guarded.guardrails import Guardrails, ResolvedPolicy
from gateway.guarded.stream_guard import StreamGuard
from gateway.responses.request import translate_request
from gateway.responses.response import response_from_chat
from gateway.responses.sse import sse_frames
from gateway.responses.stream import response_events
from guards.pipeline import GuardEngine
from guards.policy import GuardSpec, Policy, PolicyBook, Rule, StreamPolicy
from tests.support.fake_guards import WordGuard
from tests.support.responses_sdk import sdk_stream, sse_bytes, validate_event, validate_response

REQUEST = translate_request(
    {
        "model": "asked-model",
        "input": "Hi",
        "stream": True,
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": False}],
    }
)
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, index: int = 0) -> dict[str, Any]:
    choice = {"index": index, "delta": delta or {}, "finish_reason": finish}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "upstream-model",
        "choices": [choice],
    }


def last(**fields: Any) -> dict[str, Any]:
    """The chunk with no choices that ends a guarded stream (usage, the report)."""
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], **fields}


def call(
    index: int, call_id: str | None = None, name: str | None = None, arguments: str = ""
) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        function["name"] = name
    fragment: dict[str, Any] = {"index": index, "function": function}
    if call_id is not None:
        fragment.update(id=call_id, type="function")
    return fragment


async def source(
    chunks: Iterable[dict[str, Any]], failure: GatewayError | None = None
) -> AsyncIterator[dict[str, Any]]:
    for item in chunks:
        yield item
    if failure is not None:
        raise failure


async def events_of(
    chunks: Iterable[dict[str, Any]], failure: GatewayError | None = None
) -> list[dict[str, Any]]:
    events = [event async for event in response_events(source(chunks, failure), REQUEST)]
    check_stream(events)
    return events


def check_stream(events: list[dict[str, Any]]) -> None:
    """What every Responses stream must be: each event valid for the SDK, numbered from 0 without gaps,
    created first and one terminal event last, one response id, every item added before its deltas and
    done before the end, indexes in order, and the final output the items as they were done."""
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    for event in events:
        validate_event(event)
    assert [event["type"] for event in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] in TERMINAL
    assert sum(event["type"] in TERMINAL for event in events) == 1
    assert len({event["response"]["id"] for event in events if "response" in event}) == 1
    added: dict[int, str] = {}
    done: dict[int, dict[str, Any]] = {}
    parts: dict[int, int] = {}  # output_index → content parts added
    texts: dict[tuple[int, int], str] = {}
    for event in events:
        kind, index = event["type"], event.get("output_index")
        if kind == "response.output_item.added":
            assert index == len(added)
            assert event["item"]["status"] == "in_progress"
            added[index] = event["item"]["id"]
        elif kind == "response.output_item.done":
            assert added[index] == event["item"]["id"]
            assert index not in done
            done[index] = event["item"]
        elif kind == "response.content_part.added":
            assert event["content_index"] == parts.get(index, 0)
            parts[index] = event["content_index"] + 1
        elif "item_id" in event:
            assert added[index] == event["item_id"]
            assert index not in done
        if kind.endswith(".delta") and "content_index" in event:
            key = (index, event["content_index"])
            texts[key] = texts.get(key, "") + event["delta"]
        if kind in ("response.output_text.done", "response.reasoning_text.done"):
            assert event["text"] == texts.get((index, event["content_index"]), "")
        if kind == "response.refusal.done":
            assert event["refusal"] == texts.get((index, event["content_index"]), "")
    assert done.keys() == added.keys()
    final = events[-1]["response"]
    assert final["output"] == [done[i] for i in sorted(done)]
    assert final["status"] == {"response.completed": "completed", "response.incomplete": "incomplete"}.get(
        events[-1]["type"], "failed"
    )


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"].removeprefix("response.") for event in events]


def final(events: list[dict[str, Any]]) -> Any:
    return validate_response(events[-1]["response"])


# --- event by event -------------------------------------------------------------------------------


async def test_a_text_stream_event_by_event() -> None:
    events = await events_of(
        [
            chunk({"role": "assistant"}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk(finish="stop"),
            last(usage=USAGE),
        ]
    )
    assert types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    item_id = events[2]["item"]["id"]
    assert item_id.startswith("msg_")
    assert events[2]["item"] == {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    assert events[4] == {
        "type": "response.output_text.delta",
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": "Hel",
        "logprobs": [],
        "sequence_number": 4,
    }
    assert events[6]["text"] == "Hello"
    assert events[8]["item"]["status"] == "completed"
    response = final(events)
    assert (response.status, response.output_text, response.model) == ("completed", "Hello", "upstream-model")
    assert response.usage is not None
    assert response.usage.total_tokens == 10


async def test_created_goes_out_before_the_upstream_is_read_and_each_delta_as_its_chunk_arrives() -> None:
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    pulled = 0

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        nonlocal pulled
        while (item := await queue.get()) is not None:
            pulled += 1
            yield item

    events = response_events(chunks(), REQUEST)
    assert [(await anext(events))["type"] for _ in range(2)] == ["response.created", "response.in_progress"]
    assert pulled == 0
    await queue.put(chunk({"content": "Hel"}))
    assert [(await anext(events))["type"] for _ in range(3)][-1] == "response.output_text.delta"
    assert pulled == 1  # the first delta went out before a second chunk was even there
    await queue.put(chunk(finish="stop"))
    await queue.put(None)
    assert [event["type"] async for event in events][-1] == "response.completed"


async def test_a_refusal_after_text_is_a_second_part_of_the_same_message() -> None:
    events = await events_of(
        [chunk({"content": "Partial."}), chunk({"refusal": "Blocked."}, "content_filter"), last()]
    )
    assert types(events)[2:] == [
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "content_part.added",
        "refusal.delta",
        "refusal.done",
        "content_part.done",
        "output_item.done",
        "incomplete",
    ]
    assert events[7]["content_index"] == 1
    assert events[7]["part"] == {"type": "refusal", "refusal": ""}
    assert events[-2]["item"]["status"] == "incomplete"
    response = final(events)
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    assert response.output_text == "Partial."


async def test_a_cut_answer_is_incomplete_for_max_output_tokens() -> None:
    events = await events_of([chunk({"content": "The weather in Par"}, "length"), last(usage=USAGE)])
    response = final(events)
    assert events[-1]["type"] == "response.incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


async def test_streamed_tool_calls_are_function_call_items() -> None:
    """As an unguarded upstream streams them: the id and name first, the arguments in pieces."""
    events = await events_of(
        [
            chunk({"role": "assistant", "content": None}),
            chunk({"tool_calls": [call(0, "call_a", "weather")]}),
            chunk({"tool_calls": [call(0, arguments='{"city":')]}),
            chunk({"tool_calls": [call(0, arguments='"Paris"}')]}),
            chunk({"tool_calls": [call(1, "call_b", "weather", '{"city":"Rome"}')]}),
            chunk(finish="tool_calls"),
            last(),
        ]
    )
    assert types(events)[2:] == [
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    assert events[2]["item"]["arguments"] == ""
    assert events[2]["item"]["call_id"] == "call_a"
    assert events[7]["arguments"] == '{"city":"Paris"}'
    assert events[9]["arguments"] == '{"city":"Rome"}'
    response = final(events)
    assert [(c.call_id, c.name, c.arguments) for c in response.output] == [
        ("call_a", "weather", '{"city":"Paris"}'),
        ("call_b", "weather", '{"city":"Rome"}'),
    ]


async def test_reasoning_then_text() -> None:
    events = await events_of(
        [
            chunk({"reasoning_content": "2+2"}),
            chunk({"reasoning_content": " is 4"}),
            chunk({"content": "4"}),
            chunk(finish="stop"),
        ]
    )
    assert types(events)[2:10] == [
        "output_item.added",
        "content_part.added",
        "reasoning_text.delta",
        "reasoning_text.delta",
        "reasoning_text.done",
        "content_part.done",
        "output_item.done",
        "output_item.added",
    ]
    assert events[6]["text"] == "2+2 is 4"
    response = final(events)
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output_text == "4"


async def test_reasoning_sent_under_both_names_is_not_doubled() -> None:
    events = await events_of(
        [
            chunk({"reasoning_content": "2+2", "reasoning": "2+2"}),
            chunk({"reasoning": " is 4"}),
            chunk({"reasoning_content": " is 4"}),
            chunk({"content": "4"}),
            chunk(finish="stop"),
        ]
    )
    reasoning = final(events).output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.content is not None
    assert [part.text for part in reasoning.content] == ["2+2 is 4"]


@pytest.mark.parametrize(
    "chunks",
    [
        [chunk(finish="stop")],
        [chunk({"content": ""}), chunk(finish="stop")],
        [chunk({"reasoning_content": "hm"})],
        [],
    ],
    ids=["finish only", "empty content", "reasoning only, no finish", "nothing at all"],
)
async def test_an_empty_answer_still_has_a_message(chunks: list[dict[str, Any]]) -> None:
    response = final(await events_of(chunks))
    assert response.output[-1].type == "message"
    assert response.output_text == ""
    assert response.status == "completed"


async def test_only_choice_zero_is_translated_and_chunks_after_its_finish_are_ignored() -> None:
    events = await events_of(
        [
            chunk({"content": "one"}, index=1),
            chunk({"content": "zero"}),
            chunk(finish="stop"),
            chunk({"content": " late"}),
            chunk(finish="stop", index=1),
        ]
    )
    assert final(events).output_text == "zero"


async def test_usage_and_the_report_come_from_the_last_chunk() -> None:
    report = {"policy": "default", "output": [{"index": 0, "decision": "pass", "guards": []}]}
    estimated = {**USAGE, "estimated": True}
    events = await events_of(
        [chunk({"content": "x"}), chunk(finish="stop"), last(usage=estimated, guardrails=report)]
    )
    response = events[-1]["response"]
    assert response["guardrails"] is report
    assert response["usage"]["estimated"] is True
    assert "guardrails" not in events[0]["response"]  # not before the answer was judged
    assert "guardrails" not in (await events_of([chunk(finish="stop")]))[-1]["response"]


async def test_a_whole_and_a_streamed_answer_make_the_same_response() -> None:
    """The stream's final Response is built as a whole one is (``response_from_chat``), ids aside."""
    message = {
        "role": "assistant",
        "reasoning_content": "Think.",
        "content": "Looking.",
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
        ],
    }
    whole = response_from_chat(
        {
            "model": "upstream-model",
            "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
            "usage": USAGE,
        },
        REQUEST,
    )
    events = await events_of(
        [
            chunk({"reasoning_content": "Think."}),
            chunk({"content": "Looking."}),
            chunk({"tool_calls": [call(0, "call_a", "weather", "{}")]}),
            chunk(finish="length"),
            last(usage=USAGE),
        ]
    )
    streamed = events[-1]["response"]

    def shape(response: dict[str, Any]) -> dict[str, Any]:
        varying = ("id", "created_at", "completed_at")
        output = [{k: v for k, v in item.items() if k != "id"} for item in response["output"]]
        return {**{k: v for k, v in response.items() if k not in varying}, "output": output}

    assert shape(streamed) == shape(whole)


# --- the SDK's stream helper assembles the final Response -----------------------------------------

SCENARIOS: dict[str, tuple[list[dict[str, Any]], list[str], str]] = {
    "text": (
        [
            chunk({"role": "assistant"}),
            chunk({"content": "Hello "}),
            chunk({"content": "world."}),
            chunk(finish="stop"),
        ],
        ["message"],
        "Hello world.",
    ),
    "reasoning and text": (
        [chunk({"reasoning_content": "hm"}), chunk({"content": "4"}), chunk(finish="stop")],
        ["reasoning", "message"],
        "4",
    ),
    "streamed tool calls": (
        [
            chunk({"tool_calls": [call(0, "call_a", "weather")]}),
            chunk({"tool_calls": [call(0, arguments="{}")]}),
            chunk({"tool_calls": [call(1, "call_b", "weather", "{}")]}),
            chunk(finish="tool_calls"),
        ],
        ["function_call", "function_call"],
        "",
    ),
    "text then a tool call": (
        [
            chunk({"content": "Let me look."}),
            chunk({"tool_calls": [call(0, "call_a", "weather", '{"city":"Paris"}')]}),
            chunk(finish="tool_calls"),
        ],
        ["message", "function_call"],
        "Let me look.",
    ),
    "interleaved calls": (
        [
            chunk({"tool_calls": [call(0, "call_a", "weather"), call(1, "call_b", "weather")]}),
            chunk({"tool_calls": [call(1, arguments="{}"), call(0, arguments="{}")]}),
            chunk(finish="tool_calls"),
        ],
        ["function_call", "function_call"],
        "",
    ),
    "a legacy function call": (
        [chunk({"function_call": {"name": "weather", "arguments": "{}"}}), chunk(finish="function_call")],
        ["function_call"],
        "",
    ),
    "text after a call": (
        [
            chunk({"tool_calls": [call(0, "call_a", "weather", "{}")]}),
            chunk({"content": "Done."}),
            chunk(finish="stop"),
        ],
        ["function_call", "message"],
        "Done.",
    ),
    "empty": ([chunk(finish="stop")], ["message"], ""),
}


@pytest.mark.parametrize("name", SCENARIOS)
async def test_the_sdk_stream_helper_assembles_the_final_response(name: str) -> None:
    chunks, output_types, text = SCENARIOS[name]
    events = await events_of([*chunks, last(usage=USAGE, guardrails={"policy": "default"})])
    sdk_events, response = await sdk_stream(await sse_bytes(source_of(events)))
    assert [event.type for event in sdk_events] == [event["type"] for event in events]
    assert not isinstance(response, Exception), response
    assert [item.type for item in response.output] == output_types
    assert response.output_text == text
    assert response.id == events[0]["response"]["id"]
    assert response.usage is not None
    assert response.usage.total_tokens == 10
    assert response.model_extra is not None
    assert response.model_extra["guardrails"] == {"policy": "default"}
    deltas = [event for event in sdk_events if event.type == "response.output_text.delta"]
    assert "".join(event.delta for event in deltas) == text  # output_text rebuilt from the deltas
    if deltas:
        assert deltas[-1].snapshot == response.output[output_types.index("message")].content[0].text


async def source_of(events: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for event in events:
        yield event


async def test_the_sdk_parses_a_strict_functions_arguments() -> None:
    tool = {
        "type": "function",
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
    request = translate_request({"model": "m", "input": "Hi", "stream": True, "tools": [tool]})
    chunks = [
        chunk({"tool_calls": [call(0, "call_a", "weather", '{"city": "Paris"}')]}),
        chunk(finish="tool_calls"),
        last(),
    ]
    body = await sse_bytes(response_events(source(chunks), request))
    _, response = await sdk_stream(body, tools=[tool])
    assert response.output[0].parsed_arguments == {"city": "Paris"}


async def test_the_sdk_reads_an_incomplete_stream_to_its_end() -> None:
    """The SDK's helper has no final response without ``response.completed`` (as for OpenAI's own
    incomplete responses); it still reads every event, the last one with the whole Response."""
    events = await events_of(
        [chunk({"content": "Partial."}), chunk({"refusal": "Blocked."}, "content_filter")]
    )
    sdk_events, response = await sdk_stream(await sse_bytes(source_of(events)))
    assert isinstance(response, RuntimeError)
    assert isinstance(sdk_events[-1], ResponseIncompleteEvent)
    assert sdk_events[-1].response.output_text == "Partial."
    assert sdk_events[-1].response.incomplete_details is not None
    assert sdk_events[-1].response.incomplete_details.reason == "content_filter"


# --- through the real stream guard: what it blocks never reaches a Responses client ---------------


def stream_guard() -> StreamGuard:
    policy = Policy(
        output=[Rule(guard="toxicity")], stream=StreamPolicy(min_chars=10, max_chars=40, overlap_chars=12)
    )
    guardrails = Guardrails(
        GuardEngine({"toxicity": WordGuard()}),
        PolicyBook(default=policy),
        {"toxicity": GuardSpec(type="toxicity")},
    )
    return StreamGuard(guardrails, ResolvedPolicy("default", policy), "chat")


async def test_a_toxic_tail_blocked_by_the_stream_guard_never_reaches_the_client() -> None:
    text = "The first sentence is fine. The second one is fine too. Then comes BADWORD and more after it."
    pieces = [chunk({"content": text[i : i + 5]}) for i in range(0, len(text), 5)]
    guarded = stream_guard().run(
        source([chunk({"role": "assistant"}), *pieces, chunk(finish="stop"), last(usage=USAGE)])
    )
    events = [event async for event in response_events(guarded, REQUEST)]
    check_stream(events)
    wire = await sse_bytes(source_of(events))
    assert b"BADWORD" not in wire
    assert b"more after it" not in wire
    response = final(events)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"
    assert response.output_text
    assert text.startswith(response.output_text)
    assert [part.type for part in response.output[0].content] == ["output_text", "refusal"]  # type: ignore[union-attr]
    report = msgspec.to_builtins(events[-1]["response"]["guardrails"])
    assert report["output"][0]["decision"] == "block"
    assert report["output"][0]["guards"][0]["guard"] == "toxicity"
    sdk_events, _ = await sdk_stream(wire)
    assert sdk_events[-1].type == "response.incomplete"


async def test_toxic_tool_call_arguments_held_by_the_stream_guard_become_a_refusal() -> None:
    chunks = [
        chunk({"role": "assistant"}),
        chunk({"tool_calls": [call(0, "call_a", "weather", '{"city": "BAD')]}),
        chunk({"tool_calls": [call(0, arguments='WORD"}')]}),
        chunk(finish="tool_calls"),
        last(),
    ]
    events = [event async for event in response_events(stream_guard().run(source(chunks)), REQUEST)]
    check_stream(events)
    assert b"BADWORD" not in await sse_bytes(source_of(events))
    assert not any(event["type"].startswith("response.function_call") for event in events)
    response = final(events)
    assert [item.type for item in response.output] == ["message"]
    assert response.output[0].content[0].type == "refusal"  # type: ignore[union-attr]
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "content_filter"


async def test_clean_tool_calls_held_by_the_stream_guard_are_released_whole() -> None:
    chunks = [
        chunk({"tool_calls": [call(0, "call_a", "weather", '{"city": ')]}),
        chunk({"tool_calls": [call(0, arguments='"Paris"}')]}),
        chunk(finish="tool_calls"),
        last(usage=USAGE),
    ]
    events = [event async for event in response_events(stream_guard().run(source(chunks)), REQUEST)]
    check_stream(events)
    assert types(events)[2:] == [
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    assert final(events).output[0].arguments == '{"city": "Paris"}'  # type: ignore[union-attr]


# --- failures -------------------------------------------------------------------------------------


async def test_an_upstream_failure_mid_stream_is_an_error_then_response_failed() -> None:
    broken = UpstreamStreamBroken("The upstream closed the stream before it finished (no [DONE]).")
    events = await events_of([chunk({"content": "Hel"})], failure=broken)
    assert types(events)[-5:] == [
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "error",
        "failed",
    ]
    assert events[-3]["item"]["status"] == "incomplete"
    assert {k: events[-2][k] for k in ("code", "message", "param")} == {
        "code": "upstream_stream_broken",
        "message": broken.message,
        "param": None,
    }
    response = final(events)
    assert response.status == "failed"
    assert response.error is not None
    assert (response.error.code, response.error.message) == ("server_error", broken.message)
    assert response.output_text == "Hel"
    sdk_events, sdk_final = await sdk_stream(await sse_bytes(source_of(events)))
    assert [event.type for event in sdk_events][-2:] == ["error", "response.failed"]
    assert isinstance(sdk_final, RuntimeError)


async def test_a_failure_before_any_chunk_or_after_the_finish() -> None:
    broken = UpstreamStreamBroken("gone")
    assert types(await events_of([], failure=broken)) == ["created", "in_progress", "error", "failed"]
    after = await events_of([chunk({"content": "x"}, "stop")], failure=broken)
    assert types(after)[-3:] == ["output_item.done", "error", "failed"]  # nothing closed twice


HOSTILE: list[Any] = [
    {"choices": "x"},
    {"choices": [5, None, "x"]},
    {"choices": [{"index": 0, "delta": "x"}]},
    {"choices": [{"index": 0, "delta": {"content": 5, "refusal": [], "reasoning_content": {}}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": "x"}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [5, {"index": 0}, {"index": 0, "function": "x"}]}}]},
    {
        "choices": [
            {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": 5, "arguments": 7}}]}}
        ]
    },
    {"choices": [{"index": 0, "delta": {"function_call": {"name": None}}}]},
    {"choices": [], "usage": "x", "model": 5},
    {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": 5}]},
]


async def test_malformed_chunks_cannot_crash_the_translation() -> None:
    """The relay checks chunk shapes (``gateway.relay.upstream_shapes``); this stage does not rely on it."""
    for hostile in HOSTILE:
        await events_of([hostile, chunk({"content": "fine"}), chunk(finish="stop")])


# --- server-sent events ---------------------------------------------------------------------------


async def test_frames_are_openai_shaped_with_no_done_marker() -> None:
    events = await events_of([chunk({"content": "x"}), chunk(finish="stop")])
    frames = [frame async for frame in sse_frames(source_of(events))]
    assert len(frames) == len(events)
    for frame, event in zip(frames, events, strict=True):
        head, data = frame.removesuffix(b"\n\n").split(b"\n")
        assert head == b"event: " + event["type"].encode()
        assert msgspec.json.decode(data.removeprefix(b"data: ")) == msgspec.to_builtins(event)
    assert b"[DONE]" not in b"".join(frames)


@pytest.mark.parametrize(
    ("failure", "code"),
    [(RuntimeError("a bug"), "server_error"), (UpstreamStreamBroken("cut"), "upstream_stream_broken")],
)
async def test_a_failing_stage_still_ends_the_stream_with_an_error_event(
    failure: Exception, code: str
) -> None:
    async def failing() -> AsyncIterator[dict[str, Any]]:
        yield {"type": "response.created", "sequence_number": 0}
        yield {"type": "response.in_progress", "sequence_number": 1}
        raise failure

    frames = [frame async for frame in sse_frames(failing())]
    error = msgspec.json.decode(frames[-1].split(b"data: ")[1])
    assert error["type"] == "error"
    assert (error["sequence_number"], error["code"]) == (2, code)
    validate_event(error)
    assert "a bug" not in error["message"]  # a bug's details go to the log, not to the client
