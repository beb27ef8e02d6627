"""Numbered placeholders on input, and the values restored in the answer: whole, streamed, recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from feedback.events import CompletionEvent
from gateway.context import RequestContext
from gateway.guarded.completion_service import CompletionService
from gateway.guarded.endpoints import CHAT, TEXT, Endpoint
from gateway.guarded.guardrails import Guardrails, ResolvedPolicy
from gateway.guarded.pseudonyms import Pseudonyms, Restorer
from gateway.guarded.request import prepare_request
from gateway.guarded.stream_guard import StreamGuard
from gateway.guarded.stream_restore import restore_stream
from gateway.limits import LimitsSettings
from gateway.relay.proxy import ForwardCall, UpstreamAnswer, UpstreamStream
from guards.pipeline import GuardEngine
from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule, StreamMode, StreamPolicy
from tests.support.fake_guards import EmailGuard

ANN, BOB = "ann@example.org", "bob.brown@example.net"
REDACT = Rule(guard="pii", action=Action.REDACT)
WINDOWS = StreamPolicy(min_chars=10, max_chars=40, overlap_chars=12)
POLICY = Policy(input=[REDACT], output=[REDACT], stream=WINDOWS)


# --- the restorer ------------------------------------------------------------------------------


def _names() -> Pseudonyms:
    names = Pseudonyms()
    assert names.placeholder("PERSON", "Ann Lee") == "<PERSON_1>"
    assert names.placeholder("PERSON", "Bob Li") == "<PERSON_2>"
    assert names.placeholder("PERSON", "Ann Lee") == "<PERSON_1>"  # the same value, the same one
    return names


def _fed(pieces: list[str]) -> list[str]:
    restorer = Restorer(_names())
    return [restorer.feed(piece) for piece in pieces] + [restorer.flush()]


def test_a_placeholder_split_across_two_chunks_is_restored_whole() -> None:
    assert _fed(["Dear <PERS", "ON_2>, hello"]) == ["Dear ", "Bob Li, hello", ""]


def test_a_placeholder_split_across_three_chunks_is_restored_whole() -> None:
    assert _fed(["Hi <", "PERSON_", "1> and <PERSON_2>!"]) == ["Hi ", "", "Ann Lee and Bob Li!", ""]


def test_a_less_than_sign_that_starts_no_placeholder_goes_out_at_once() -> None:
    assert _fed(["a < b", " and <3 <PERSONA"]) == ["a < b", " and <3 <PERSONA", ""]


def test_unknown_placeholders_stay_as_they_are() -> None:
    assert _fed(["<PERSON_3> and <EMAIL_ADDRESS_1>", "<PERSON_1"]) == [
        "<PERSON_3> and <EMAIL_ADDRESS_1>",
        "",
        "<PERSON_1",  # never finished: flushed as it came
    ]


def test_the_mapping_never_shows_a_value() -> None:
    names = _names()
    assert repr(names) == "Pseudonyms(2 placeholders)"
    assert "Ann" not in f"{names!s}{names!r}"


# --- through the guarded path, with a fake upstream and recorder -------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.events: list[CompletionEvent] = []

    def record(self, event: CompletionEvent) -> None:
        self.events.append(event)


class _Echo:
    """Answers with the last message's content (chat) or the prompt, in three-character chunks when
    streamed; ``sse_response`` hands back the chunks the client would get."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def _said(self, call: ForwardCall) -> tuple[bool, str]:
        body = msgspec.json.decode(call.body)
        self.bodies.append(body)
        chat = "messages" in body
        return chat, body["messages"][-1]["content"] if chat else body["prompt"]

    async def complete(self, context: RequestContext, call: ForwardCall) -> UpstreamAnswer:
        chat, text = self._said(call)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        return UpstreamAnswer(msgspec.json.encode({"id": "c", "choices": [choice]}), "application/json")

    async def stream(self, context: RequestContext, call: ForwardCall) -> UpstreamStream:
        chat, text = self._said(call)

        def choice(piece: str, finish: str | None = None) -> dict[str, Any]:
            body = {"delta": {"content": piece} if piece else {}} if chat else {"text": piece}
            return {"id": "c", "choices": [{"index": 0, **body, "finish_reason": finish}]}

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            for start in range(0, len(text), 3):
                yield choice(text[start : start + 3])
            yield choice("", "stop")

        return UpstreamStream(chunks(), [])

    def sse_response(self, stream: UpstreamStream, headers: dict[str, str] | None = None) -> UpstreamStream:
        return stream


class _Path:
    def __init__(self, policy: Policy) -> None:
        self.upstream, self.recorder = _Echo(), _Recorder()
        self.guardrails = Guardrails(
            GuardEngine({"pii": EmailGuard()}), PolicyBook(default=policy), {"pii": GuardSpec(type="pii")}
        )
        self.service = CompletionService(self.upstream, self.guardrails, self.recorder)  # type: ignore[arg-type]

    async def send(self, endpoint: Endpoint, raw: dict[str, Any]) -> dict[str, Any]:
        """What the client gets: the answer, or a stream's text assembled (as ``text``)."""
        request = prepare_request(
            endpoint, raw, msgspec.json.encode(raw), "acme", self.guardrails, LimitsSettings()
        )
        response: Any = await self.service.serve(RequestContext("r"), request)
        if not raw.get("stream"):
            answer: dict[str, Any] = msgspec.json.decode(response.content)
            return answer
        chunks = [chunk async for chunk in response.chunks]
        return {"text": "".join(_chunk_text(chunk) for chunk in chunks), "chunks": chunks}


def _chunk_text(chunk: dict[str, Any]) -> str:
    return "".join(
        (c.get("delta") or {}).get("content") or c.get("text") or "" for c in chunk.get("choices") or ()
    )


def _chat(*contents: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": content} for content in contents]
    return {"model": "echo", "messages": messages, **extra}


def _answer_text(answer: dict[str, Any]) -> str:
    choice = answer["choices"][0]
    return str(choice["message"]["content"] if "message" in choice else choice["text"])


def _recorded_text(event: CompletionEvent) -> str:
    choice = event.choices[0]
    return str(choice["text"] if "text" in choice else choice["message"]["content"])


async def test_one_value_keeps_one_placeholder_across_slots_and_two_values_get_two() -> None:
    path = _Path(POLICY)
    await path.send(CHAT, _chat(f"I am {ANN}.", f"Write to {BOB}, cc {ANN}."))
    sent = [m["content"] for m in path.upstream.bodies[-1]["messages"]]
    assert sent == ["I am <EMAIL_ADDRESS_1>.", "Write to <EMAIL_ADDRESS_2>, cc <EMAIL_ADDRESS_1>."]


async def test_a_placeholder_the_client_wrote_is_never_handed_out() -> None:
    path = _Path(POLICY)
    answer = await path.send(CHAT, _chat(f"Is <EMAIL_ADDRESS_1> {ANN}?"))
    assert path.upstream.bodies[-1]["messages"][0]["content"] == "Is <EMAIL_ADDRESS_1> <EMAIL_ADDRESS_2>?"
    assert _answer_text(answer) == f"Is <EMAIL_ADDRESS_1> {ANN}?"  # the client's own text, as it wrote it


@pytest.mark.parametrize("endpoint", [CHAT, TEXT], ids=["chat", "text"])
async def test_a_whole_answer_is_restored_for_the_client_and_recorded_with_placeholders(
    endpoint: Endpoint,
) -> None:
    path = _Path(POLICY)
    text = f"Write to {BOB} and {ANN}; {BOB} knows."
    raw = _chat(text) if endpoint is CHAT else {"model": "echo", "prompt": text}
    answer = await path.send(endpoint, raw)
    assert _answer_text(answer) == text
    assert answer["guardrails"]["output"][0]["decision"] == "pass"  # the guards saw placeholders only
    (event,) = path.recorder.events
    placeholders = "Write to <EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>; <EMAIL_ADDRESS_1> knows."
    assert _recorded_text(event) == placeholders
    assert ANN not in msgspec.json.encode(event).decode()


FIRST = Policy(input=[REDACT], stream=msgspec.structs.replace(WINDOWS, mode=StreamMode.STREAM_FIRST))


@pytest.mark.parametrize("policy", [POLICY, FIRST], ids=["buffer", "stream_first"])
@pytest.mark.parametrize("endpoint", [CHAT, TEXT], ids=["chat", "text"])
async def test_a_stream_is_restored_across_chunks_and_recorded_with_placeholders(
    endpoint: Endpoint, policy: Policy
) -> None:
    path = _Path(policy)
    text = f"Dear {ANN}, and {BOB}: the plan stands. Regards to {ANN}"
    raw = _chat(text, stream=True) if endpoint is CHAT else {"model": "echo", "prompt": text, "stream": True}
    streamed = await path.send(endpoint, raw)
    assert streamed["text"] == text
    finishes = [
        i for i, c in enumerate(streamed["chunks"]) if any(x.get("finish_reason") for x in c["choices"])
    ]
    assert streamed["text"].endswith(_chunk_text(streamed["chunks"][finishes[0] - 1]))  # held text went first
    (event,) = path.recorder.events
    assert _recorded_text(event) == text.replace(ANN, "<EMAIL_ADDRESS_1>").replace(BOB, "<EMAIL_ADDRESS_2>")


async def test_restore_off_leaves_the_placeholders_in_the_answer() -> None:
    kept = msgspec.structs.replace(REDACT, restore=False)
    path = _Path(Policy(input=[kept], output=[REDACT], stream=WINDOWS))
    for stream in (False, True):
        answer = await path.send(CHAT, _chat(f"Mail {ANN} or {BOB}.", stream=stream))
        text = answer["text"] if stream else _answer_text(answer)
        assert text == "Mail <EMAIL_ADDRESS> or <EMAIL_ADDRESS>."  # unnumbered: nothing to link or restore


async def test_a_placeholder_cut_by_a_forced_window_cut_is_restored_whole() -> None:
    names = Pseudonyms()
    placeholder = names.placeholder("EMAIL_ADDRESS", ANN)
    narrow = Policy(output=[REDACT], stream=StreamPolicy(min_chars=5, max_chars=20, overlap_chars=4))
    guardrails = Guardrails(GuardEngine({"pii": EmailGuard()}), PolicyBook(default=narrow), {})
    text = "x" * 14 + placeholder + " and then some more words with no end"

    async def upstream() -> AsyncIterator[dict[str, Any]]:
        for start in range(0, len(text), 5):
            yield {"id": "c", "choices": [{"index": 0, "delta": {"content": text[start : start + 5]}}]}
        yield {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}

    guard = StreamGuard(guardrails, ResolvedPolicy("narrow", narrow), "chat")
    guarded = [chunk async for chunk in guard.run(upstream())]
    released = [_chunk_text(chunk) for chunk in guarded]
    assert not any(placeholder in piece for piece in released)  # the window cut split it

    async def replay() -> AsyncIterator[dict[str, Any]]:
        for chunk in guarded:
            yield chunk

    restored = [_chunk_text(chunk) async for chunk in restore_stream(replay(), names, chat=True)]
    assert "".join(restored) == text.replace(placeholder, ANN)
    assert any(ANN in piece for piece in restored)  # in one piece, never half a placeholder
    assert not any("<" in piece for piece in restored)
    assert "".join(released) == text  # the chunks the recorder holds were not changed


async def test_tool_call_arguments_held_whole_are_restored_whole() -> None:
    names = Pseudonyms()
    placeholder = names.placeholder("EMAIL_ADDRESS", ANN)
    call = {"index": 0, "id": "t", "type": "function", "function": {"name": "send", "arguments": ""}}
    arguments = '{"to": "' + placeholder + '"}'
    more = {"index": 0, "function": {"arguments": arguments}}
    chunks = [
        {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [more]}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    guard = StreamGuard(
        Guardrails(GuardEngine({"pii": EmailGuard()}), PolicyBook(default=POLICY), {}),
        ResolvedPolicy("p", POLICY),
        "chat",
    )

    async def upstream() -> AsyncIterator[dict[str, Any]]:
        for chunk in chunks:
            yield chunk

    out = [chunk async for chunk in restore_stream(guard.run(upstream()), names, chat=True)]
    sent = [
        call["function"]["arguments"]
        for chunk in out
        for choice in chunk["choices"]
        for call in (choice.get("delta") or {}).get("tool_calls") or ()
    ]
    assert sent == ['{"to": "' + ANN + '"}']
