"""The ``guardrails`` report on the wire, byte for byte: answers, errors, streams, moderations and sampled
candidates carry exactly the JSON they carried before the report was typed (golden files, captured from
the untyped code). Guards here take fixed, awkward latencies, so sums and rounding are pinned too.

One difference was accepted: a stream's report lists ``input`` before ``output``, as answers always did
(the untyped one had ``policy, output, input``: the order it was filled in). The JSON is equal."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from feedback.assembler import EventMeta
from feedback.events import decode_event, encode_event
from gateway.app import create_app
from gateway.auth import hash_key
from gateway.guarded.endpoints import CHAT
from gateway.guarded.guardrails import Guardrails, ResolvedPolicy
from gateway.guarded.request import prepare_request
from gateway.guarded.sampling import CandidateSampler
from gateway.guarded.stream_guard import StreamGuard
from gateway.guarded.text_slots import chat_choice_slots
from gateway.limits import LimitsSettings
from gateway.relay.proxy import ForwardCall, UpstreamAnswer
from gateway.settings import (
    ApiKey,
    AuthSettings,
    FeedbackSettings,
    SamplingSettings,
    Settings,
    UpstreamSettings,
)
from guards.pipeline import GuardEngine
from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule, StreamPolicy, TenantPolicies
from guards.verdict import Evidence, JudgeContext, Verdict
from tests.support.fake_guards import EmailGuard, WordGuard
from tests.support.fake_upstream import FakeUpstream, completion

GOLDEN = Path(__file__).parent.parent / "data" / "guardrails_report"
GUARDS = {"toxicity": GuardSpec(type="toxicity"), "pii": GuardSpec(type="pii"), "claims": GuardSpec(type="x")}
# Input placeholders unnumbered and not restored, as when the golden files were captured: the echo model
# says them back, and numbered ones would move the answer's positions (restoring has its own tests).
REDACT_INPUT = Rule(guard="pii", action=Action.REDACT, restore=False)
INPUT = [Rule(guard="toxicity"), REDACT_INPUT]
OUTPUT = [
    Rule(guard="toxicity"),
    Rule(guard="pii", action=Action.REDACT),
    Rule(guard="claims", action=Action.FLAG),
]
WINDOWS = StreamPolicy(min_chars=10, max_chars=40, overlap_chars=12)


class TimedWords(WordGuard):
    """The word guard, every verdict of which took a fixed, unround time."""

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        verdicts = await super().judge(texts, thresholds, context)
        return [msgspec.structs.replace(v, latency_ms=1.23456) for v in verdicts]


class TimedEmails(EmailGuard):
    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        verdicts = await super().judge(texts, thresholds, context)
        return [msgspec.structs.replace(v, latency_ms=0.33333) for v in verdicts]


class ClaimGuard(EmailGuard):
    """Flags every mention of the moon as an unsupported claim, with evidence where it stands."""

    kind: ClassVar[str] = "fake-claims"
    default_thresholds: ClassVar[Mapping[str, float]] = {"unsupported": 0.5}

    def __init__(self) -> None:
        super().__init__("claims")

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        verdicts = []
        for text in texts:
            found = [m.start() for m in re.finditer("moon", text)]
            evidence = [Evidence("unsupported", "no source says so", None, s, s + 4, 0.87654) for s in found]
            evidence.append(Evidence("note", "not about a part"))  # no position: never in a report
            flagged = ["unsupported"] if found else []
            score = 0.87654 if found else 0.0
            verdicts.append(
                Verdict(
                    "claims",
                    not flagged,
                    {"unsupported": score},
                    flagged,
                    evidence=evidence,
                    latency_ms=2.005,
                )
            )
        return verdicts


def _guards() -> dict[str, Any]:
    return {"toxicity": TimedWords(), "pii": TimedEmails(), "claims": ClaimGuard()}


def _book() -> PolicyBook:
    echo = Policy(input=[REDACT_INPUT], output=OUTPUT, stream=WINDOWS)
    return PolicyBook(
        default=Policy(input=INPUT, output=OUTPUT, stream=WINDOWS),
        models={"echo": echo},
        tenants={"outonly": TenantPolicies(default=Policy(output=OUTPUT, stream=WINDOWS))},
    )


@asynccontextmanager
async def gateway() -> AsyncIterator[AsyncTestClient[Any]]:
    keys = [
        ApiKey(tenant="acme", sha256=hash_key("k-acme")),
        ApiKey(tenant="outonly", sha256=hash_key("k-out")),
    ]
    settings = Settings(
        feedback=FeedbackSettings(record=False),
        auth=AuthSettings(keys=keys),
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
        guards=GUARDS,
        policies=_book(),
    )
    app = create_app(settings, upstream_transport=FakeUpstream().transport(), guards=_guards())
    async with AsyncTestClient(app) as client:
        yield client


async def http_case(client: AsyncTestClient[Any], case: str) -> tuple[bytes, str]:
    """The body (moderation ids normalised) and the summary header of one case."""
    path, body, key = HTTP_CASES[case]
    response = await client.post(path, json=body, headers={"authorization": f"Bearer {key}"})
    return re.sub(rb"modr-[0-9a-f]{32}", b"modr-ID", response.content), response.headers.get(
        "x-hhh-guardrails", ""
    )


def _chat(content: str, model: str = "fake-model", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


STREAM_0 = "Mail ann@example.org now. A calm sentence about the moon here. And then the moon again, calmly."
STREAM_1 = "Fine start here today, and more. Then BADWORD appears. Nothing after."

# name → (path, body, tenant key)
HTTP_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "chat_input_redact_output_pass": ("/v1/chat/completions", _chat("mail me at ann@example.org"), "k-acme"),
    "chat_output_blocked_and_claims": (
        "/v1/chat/completions",
        _chat("The moon is made of cheese.||Then BADWORD here.", model="echo", n=2),
        "k-acme",
    ),
    "chat_input_blocked": ("/v1/chat/completions", _chat("you BADWORD"), "k-acme"),
    "text_output_redact_no_input_policy": (
        "/v1/completions",
        {"model": "echo", "prompt": "write to bo@ex.com about the moon"},
        "k-out",
    ),
    "text_input_redact": (
        "/v1/completions",
        {"model": "echo", "prompt": "write to bo@ex.com today"},
        "k-acme",
    ),
    "stream_chat_two_choices": (
        "/v1/chat/completions",
        _chat(f"{STREAM_0}||{STREAM_1}", model="echo", n=2, stream=True),
        "k-acme",
    ),
    "stream_text_no_input_policy": (
        "/v1/completions",
        {"model": "echo", "prompt": STREAM_0, "stream": True},
        "k-out",
    ),
    "stream_usage_chunk": (
        "/v1/chat/completions",
        _chat("Hello there.", stream=True, stream_options={"include_usage": True}),
        "k-acme",
    ),
    "moderation": ("/v1/moderations", {"input": ["hello", "BADWORD", "x@y.org", "the moon"]}, "k-acme"),
}


@pytest.mark.parametrize("case", sorted(HTTP_CASES))
async def test_the_report_on_the_wire_is_unchanged(case: str) -> None:
    async with gateway() as client:
        body, header = await http_case(client, case)
    assert body == (GOLDEN / f"{case}.body").read_bytes()
    assert header == (GOLDEN / f"{case}.header").read_text()


def _tool_call_chunks() -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "send", "arguments": ""}}
    return [
        chunk({"role": "assistant", "content": "Sending it to the moon station now."}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"to": "ann@exa'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'mple.org", "where": "moon"}'}}]}),
        chunk({}, "tool_calls"),
    ]


async def tool_call_stream() -> bytes:
    """The chunks a stream guard sends for an answer that ends in a held tool call, one per line."""
    policy = Policy(output=OUTPUT, stream=WINDOWS)
    guardrails = Guardrails(GuardEngine(_guards()), PolicyBook(default=policy), GUARDS)
    guard = StreamGuard(guardrails, ResolvedPolicy("tools", policy), "chat")

    async def upstream() -> AsyncIterator[dict[str, Any]]:
        for chunk in _tool_call_chunks():
            yield chunk

    return b"\n".join([msgspec.json.encode(chunk) async for chunk in guard.run(upstream())])


async def test_a_stream_with_held_tool_calls_reports_as_before() -> None:
    assert await tool_call_stream() == (GOLDEN / "stream_tool_calls.chunks").read_bytes()


class _Proxy:
    def __init__(self, text: str) -> None:
        self.text = text

    async def complete(self, context: Any, call: ForwardCall) -> UpstreamAnswer:
        return UpstreamAnswer(msgspec.json.encode(completion(self.text)), "application/json")


class _Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def record(self, event: Any) -> None:
        self.events.append(event)


async def sampled_candidate() -> bytes:
    """The event recorded for a sampled candidate (its id and time fixed)."""
    policy = Policy(output=OUTPUT)
    guardrails = Guardrails(GuardEngine(_guards()), PolicyBook(default=policy), GUARDS)
    resolved = ResolvedPolicy("default", policy)
    recorder = _Recorder()
    settings = FeedbackSettings(sampling=SamplingSettings(temperatures=[0.3]))
    sampler = CandidateSampler(_Proxy("Mail bo@ex.com about the moon."), recorder, settings)  # type: ignore[arg-type]
    raw = _chat("hi")
    request = prepare_request(CHAT, raw, msgspec.json.encode(raw), "acme", guardrails, LimitsSettings())

    def refuse(choice: dict[str, Any], refusal: str) -> None:
        choice["message"] = {"role": "assistant", "content": None, "refusal": refusal}

    async def guard(choices: list[dict[str, Any]]) -> Any:
        return await guardrails.check_choices(resolved, choices, chat_choice_slots, refuse)

    sampler.sample(EventMeta("req", "acme", "fake-model", "chat.completions", False), request, guard)
    while not recorder.events:  # the candidate is asked for in the background
        await asyncio.sleep(0.01)
    (event,) = recorder.events
    return encode_event(msgspec.structs.replace(event, id="ID", created=0.0, candidate_of="ORIGINAL"))


async def test_a_sampled_candidates_report_is_unchanged() -> None:
    assert await sampled_candidate() == (GOLDEN / "sampled_candidate.event").read_bytes()


# --- events recorded by older versions ---------------------------------------------------------


@pytest.mark.parametrize("name", ["sampled_candidate.event", "stream_two_choices.event"])
def test_events_recorded_before_the_report_was_typed_still_decode(name: str) -> None:
    recorded = (GOLDEN / name).read_bytes()
    event = decode_event(recorded)
    assert event.guardrails is not None
    assert msgspec.json.decode(encode_event(event)) == msgspec.json.decode(recorded)  # nothing lost
