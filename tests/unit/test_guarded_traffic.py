"""Guards on the request path, with deterministic fake guards: input, output, streams, policies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.guarded.guardrails import Guardrails, ResolvedPolicy
from gateway.guarded.stream_guard import StreamGuard
from gateway.settings import ApiKey, AuthSettings, FeedbackSettings, Settings, UpstreamSettings
from guards.pipeline import GuardEngine
from guards.policy import (
    Action,
    FailMode,
    GuardSpec,
    Policy,
    PolicyBook,
    Rule,
    StreamMode,
    StreamPolicy,
    TenantPolicies,
)
from tests.support.fake_guards import EmailGuard, WordGuard
from tests.support.fake_upstream import FakeUpstream
from tests.support.sse import sse_events

GUARDS = {"toxicity": GuardSpec(type="toxicity"), "pii": GuardSpec(type="pii")}
INPUT = [Rule(guard="toxicity"), Rule(guard="pii", action=Action.REDACT)]
OUTPUT = [Rule(guard="toxicity"), Rule(guard="pii", action=Action.REDACT)]
WINDOW_SIZES = {"min_chars": 10, "max_chars": 40, "overlap_chars": 12}
WINDOWS = StreamPolicy(**WINDOW_SIZES)


def _book(**models: Policy) -> PolicyBook:
    # The "echo" model repeats its input, so its policy leaves toxicity off the input to test outputs.
    echo = Policy(input=[Rule(guard="pii", action=Action.REDACT)], output=OUTPUT, stream=WINDOWS)
    return PolicyBook(
        default=Policy(input=INPUT, output=OUTPUT, stream=WINDOWS), models={"echo": echo, **models}
    )


class Harness:
    def __init__(
        self, client: AsyncTestClient[Any], upstream: FakeUpstream, words: WordGuard, emails: EmailGuard
    ):
        self.client = client
        self.upstream = upstream
        self.words = words
        self.emails = emails


async def _harness(book: PolicyBook, auth: AuthSettings | None = None) -> AsyncIterator[Harness]:
    upstream, words, emails = FakeUpstream(), WordGuard(), EmailGuard()
    settings = Settings(
        feedback=FeedbackSettings(record=False),  # recording has its own tests
        auth=auth or AuthSettings(),
        upstreams=[
            UpstreamSettings(name="fake", url="http://fake.test/v1"),
            UpstreamSettings(name="second", url="http://second.test/v1", models=["second-model"]),
        ],
        guards=GUARDS,
        policies=book,
    )
    app = create_app(
        settings, upstream_transport=upstream.transport(), guards={"toxicity": words, "pii": emails}
    )
    async with AsyncTestClient(app) as client:
        yield Harness(client, upstream, words, emails)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async for h in _harness(_book()):
        yield h


def _chat(content: str, model: str = "fake-model", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


# --- input -------------------------------------------------------------------------------------


async def test_input_block_is_a_400_content_filter_and_never_reaches_the_upstream(harness: Harness) -> None:
    response = await harness.client.post("/v1/chat/completions", json=_chat("you BADWORD"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "content_filter"
    assert error["param"] == "messages[0].content"
    assert "toxicity" in error["message"]
    assert error["guardrails"]["input"]["guards"][0]["categories"] == ["toxicity"]
    assert harness.upstream.bodies == []


async def test_input_redaction_happens_before_the_upstream(harness: Harness) -> None:
    response = await harness.client.post("/v1/chat/completions", json=_chat("mail me at ann@example.org"))
    assert response.status_code == 200
    assert harness.upstream.bodies[-1]["messages"][0]["content"] == "mail me at <EMAIL_ADDRESS_1>"
    report = response.json()["guardrails"]
    assert report["input"]["decision"] == "redact"
    assert response.headers["x-hhh-guardrails"] == "input=redact(pii); output=pass"
    assert "ann@example.org" not in response.text  # the report gives positions, not the data


@pytest.mark.parametrize(
    ("message", "where"),
    [
        ({"role": "system", "content": "BADWORD rules"}, "messages[0].content"),
        ({"role": "assistant", "content": [{"type": "text", "text": "BADWORD"}]},
         "messages[0].content[0].text"),
        ({"role": "tool", "tool_call_id": "c1", "content": "result: BADWORD"}, "messages[0].content"),
        (
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
             "function": {"name": "f", "arguments": '{"q": "BADWORD"}'}}]},
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)  # fmt: skip
async def test_every_role_and_tool_argument_is_checked(
    harness: Harness, message: dict[str, Any], where: str
) -> None:
    body = {"model": "fake-model", "messages": [message, {"role": "user", "content": "hi"}]}
    response = await harness.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == where


async def test_token_prompts_cannot_skip_input_guards(harness: Harness) -> None:
    response = await harness.client.post("/v1/completions", json={"model": "fake-model", "prompt": [1, 2, 3]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"


# --- output, whole answers ---------------------------------------------------------------------


async def test_output_block_ends_the_choice_with_content_filter(harness: Harness) -> None:
    response = await harness.client.post("/v1/chat/completions", json=_chat("say BADWORD", model="echo", n=2))
    body = response.json()
    assert response.status_code == 200
    for choice in body["choices"]:
        assert choice["finish_reason"] == "content_filter"
        assert choice["message"]["content"] is None
        assert "toxicity" in choice["message"]["refusal"]
    assert [c["decision"] for c in body["guardrails"]["output"]] == ["block", "block"]
    assert response.headers["x-hhh-guardrails"] == "input=pass; output=block(toxicity)"


async def test_output_redaction_rewrites_the_content(harness: Harness) -> None:
    # Input redaction is off for this model, so the echo carries the address back for the output guard.
    book = _book(echo=Policy(output=OUTPUT))
    async for h in _harness(book):
        response = await h.client.post("/v1/chat/completions", json=_chat("write to bo@ex.com", model="echo"))
        assert response.json()["choices"][0]["message"]["content"] == "write to <EMAIL_ADDRESS>"
        assert response.json()["choices"][0]["finish_reason"] == "stop"


async def test_legacy_completion_output_is_guarded(harness: Harness) -> None:
    response = await harness.client.post("/v1/completions", json={"model": "echo", "prompt": "BADWORD!"})
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["text"] == ""


async def test_annotate_appends_the_disclaimer() -> None:
    annotate = Policy(output=[Rule(guard="toxicity", action=Action.ANNOTATE)], disclaimer=" [checked]")
    async for h in _harness(_book(echo=annotate)):
        response = await h.client.post("/v1/chat/completions", json=_chat("BADWORD here", model="echo"))
        assert response.json()["choices"][0]["message"]["content"] == "BADWORD here [checked]"


# --- output, streams ---------------------------------------------------------------------------


def _streamed_text(events: list[Any], index: int = 0) -> str:
    text = ""
    for event in events:
        for choice in event.get("choices", []) if isinstance(event, dict) else []:
            if choice["index"] == index:
                text += (choice.get("delta") or {}).get("content") or choice.get("text") or ""
    return text


async def test_stream_true_is_no_way_around_an_output_guard(harness: Harness) -> None:
    answer = "A calm opening sentence here. Then BADWORD appears in the middle. And a calm ending."
    response = await harness.client.post(
        "/v1/chat/completions", json=_chat(answer, model="echo", stream=True)
    )
    events = sse_events(response.text)
    assert "BAD" not in response.text.replace("BADWORD", "")  # not even the first half of the word
    assert "BADWORD" not in _streamed_text(events)
    assert _streamed_text(events) == "A calm opening sentence here. "  # what passed before the block
    finish = [
        c for e in events if isinstance(e, dict) for c in e.get("choices", []) if c.get("finish_reason")
    ]
    assert [c["finish_reason"] for c in finish] == ["content_filter"]
    assert "toxicity" in finish[0]["delta"]["refusal"]
    assert events[-1] == "[DONE]"
    assert events[-2]["guardrails"]["output"][0]["decision"] == "block"


async def test_stream_tail_without_sentence_end_is_checked(harness: Harness) -> None:
    response = await harness.client.post(
        "/v1/chat/completions", json=_chat("fine words BADWORD", model="echo", stream=True)
    )
    assert "BADWORD" not in _streamed_text(sse_events(response.text))


async def test_stream_redacts_an_address_split_across_chunks() -> None:
    async for h in _harness(_book(echo=Policy(output=OUTPUT, stream=WINDOWS))):
        text = "Please write to someone.long@example.org about it today, and nobody else at all."
        response = await h.client.post("/v1/chat/completions", json=_chat(text, model="echo", stream=True))
        streamed = _streamed_text(sse_events(response.text))
        assert streamed == "Please write to <EMAIL_ADDRESS> about it today, and nobody else at all."


async def test_stream_first_sends_at_once_and_stops_within_a_window() -> None:
    loose = StreamPolicy(mode=StreamMode.STREAM_FIRST, min_chars=10, max_chars=40, overlap_chars=12)
    async for h in _harness(_book(echo=Policy(output=[Rule(guard="toxicity")], stream=loose))):
        answer = "First sentence is fine. BADWORD comes next. " + "More text after the violation. " * 5
        response = await h.client.post("/v1/chat/completions", json=_chat(answer, model="echo", stream=True))
        streamed = _streamed_text(sse_events(response.text))
        violation_window_end = answer.index("BADWORD") + len("BADWORD comes next. ")
        assert streamed.startswith("First sentence is fine. ")
        assert len(streamed) <= violation_window_end  # the bound: at most the violating window went out
        assert "More text after" not in streamed


def _chunks(text: str) -> list[dict[str, Any]]:
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    return [
        {"id": "c", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces
    ] + [{"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]


@pytest.mark.parametrize(("mode", "judged_before_first_text"), [("stream_first", 0), ("buffer", 1)])
async def test_stream_first_releases_text_before_its_window_is_judged(
    mode: str, judged_before_first_text: int
) -> None:
    """Step through the stream guard chunk by chunk: in stream_first mode the first text goes out while
    no window has been judged yet; in buffer mode only after its window was."""
    words = WordGuard()
    engine = GuardEngine({"toxicity": words})
    policy = Policy(
        output=[Rule(guard="toxicity")], stream=StreamPolicy(mode=StreamMode(mode), **WINDOW_SIZES)
    )
    guard = StreamGuard(
        Guardrails(engine, PolicyBook(default=policy), GUARDS), ResolvedPolicy("p", policy), "chat"
    )

    async def upstream() -> AsyncIterator[dict[str, Any]]:
        for chunk in _chunks("First sentence is fine. Second one is fine too."):
            yield chunk

    judged_at_first_text = None
    async for out in guard.run(upstream()):
        if any((c.get("delta") or {}).get("content") for c in out.get("choices") or ()):
            judged_at_first_text = len(words.calls)
            break
    assert judged_at_first_text == judged_before_first_text


async def test_stream_guard_work_is_linear(harness: Harness) -> None:
    answer = "A sentence of ordinary, harmless text. " * 100  # 3,900 characters
    harness.words.calls.clear()
    await harness.client.post("/v1/chat/completions", json=_chat(answer, model="echo", stream=True))
    checked = sum(len(text) for call in harness.words.calls for text in call)
    assert checked <= 1.5 * len(answer)  # each character once, plus window context


@pytest.mark.parametrize("stream", [True, False])
async def test_n_2_blocks_only_the_offending_choice(stream: bool) -> None:
    async for h in _harness(_book()):
        # The echo answers "||"-separated parts as separate choices: choice 1 alone is toxic.
        prompt = "All good here. Nothing bad.||Fine start. Then BADWORD here."
        response = await h.client.post(
            "/v1/chat/completions", json=_chat(prompt, model="echo", stream=stream, n=2)
        )
        if stream:
            events = sse_events(response.text)
            report = events[-2]["guardrails"]["output"]
            finishes = {
                c["index"]: c["finish_reason"]
                for e in events
                if isinstance(e, dict)
                for c in e.get("choices", [])
                if c.get("finish_reason")
            }
            assert _streamed_text(events, 0) == "All good here. Nothing bad."
            assert "BADWORD" not in _streamed_text(events, 1)
        else:
            body = response.json()
            report = body["guardrails"]["output"]
            finishes = {c["index"]: c["finish_reason"] for c in body["choices"]}
            assert body["choices"][0]["message"]["content"] == "All good here. Nothing bad."
            assert body["choices"][1]["message"]["content"] is None
            assert "toxicity" in body["choices"][1]["message"]["refusal"]
        assert finishes == {0: "stop", 1: "content_filter"}
        assert [c["decision"] for c in sorted(report, key=lambda c: c["index"])] == ["pass", "block"]


# --- fail modes, policies, tightening ----------------------------------------------------------


async def test_guard_failure_fails_closed_with_503() -> None:
    async for h in _harness(_book()):
        h.words.fail = True
        response = await h.client.post("/v1/chat/completions", json=_chat("hello"))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "guard_unavailable"


async def test_guard_timeout_fails_open_when_the_policy_says_so() -> None:
    lenient = Policy(input=[Rule(guard="toxicity", timeout_ms=50, on_error=FailMode.OPEN)])
    async for h in _harness(PolicyBook(default=lenient)):
        h.words.delay_s = 1.0
        response = await h.client.post("/v1/chat/completions", json=_chat("hello"))
        assert response.status_code == 200
        guard = response.json()["guardrails"]["input"]["guards"][0]
        assert guard["decision"] == "error"
        assert guard["error"].startswith("timeout")


async def test_a_request_may_tighten_its_policy(harness: Harness) -> None:
    # The fake scores clean text 0.01: a threshold of 0.005 flags it.
    tighter = {"input": [{"guard": "toxicity", "thresholds": {"toxicity": 0.005}}]}
    response = await harness.client.post("/v1/chat/completions", json=_chat("hello", guardrails=tighter))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_filter"


async def test_a_request_may_not_loosen_its_policy(harness: Harness) -> None:
    for looser, param in [
        (
            {"input": [{"guard": "toxicity", "thresholds": {"toxicity": 0.99}}]},
            "guardrails.input[0].thresholds.toxicity",
        ),
        ({"input": [{"guard": "toxicity", "action": "flag"}]}, "guardrails.input[0].action"),
        ({"output": [{"guard": "toxicity", "on_error": "open"}]}, "guardrails.output[0].on_error"),
        ({"stream": {"mode": "stream_first"}}, "guardrails.stream.mode"),
    ]:
        response = await harness.client.post("/v1/chat/completions", json=_chat("hello", guardrails=looser))
        assert response.status_code == 400, looser
        assert response.json()["error"]["param"] == param


async def test_the_guardrails_field_is_not_forwarded(harness: Harness) -> None:
    tighter = {"output": [{"guard": "pii", "action": "block"}]}
    await harness.client.post("/v1/chat/completions", json=_chat("hello", guardrails=tighter))
    assert "guardrails" not in harness.upstream.bodies[-1]


async def test_policies_resolve_per_tenant_and_model() -> None:
    """Key → tenant → policy, through the gateway: the same request gets each tenant's own policy."""
    book = PolicyBook(
        default=Policy(input=INPUT),
        tenants={
            "lenient": TenantPolicies(default=Policy(), models={"second-model": Policy(input=INPUT)}),
            "strict": TenantPolicies(default=Policy(input=INPUT)),
        },
    )
    keys = [ApiKey(tenant="lenient", sha256=hash_key("key-lenient")),
            ApiKey(tenant="strict", sha256=hash_key("key-strict"))]  # fmt: skip
    async for h in _harness(book, auth=AuthSettings(keys=keys)):

        async def ask(key: str, model: str = "fake-model", client: Any = h.client) -> int:
            headers = {"authorization": f"Bearer {key}"}
            body = _chat("BADWORD", model=model)
            return (await client.post("/v1/chat/completions", json=body, headers=headers)).status_code

        assert await ask("key-lenient") == 200  # the lenient tenant's default runs no guards
        assert await ask("key-strict") == 400
        assert await ask("key-lenient", model="second-model") == 400  # its per-model policy guards
        assert await ask("key-unknown") == 401


# --- moderations -------------------------------------------------------------------------------


async def test_moderations_shape(harness: Harness) -> None:
    response = await harness.client.post("/v1/moderations", json={"input": ["hello", "BADWORD", "x@y.org"]})
    results = response.json()["results"]
    assert [r["flagged"] for r in results] == [False, True, True]
    assert results[1]["categories"]["harassment"] is True
    assert results[1]["category_scores"]["toxicity/toxicity"] == 0.99
    assert results[2]["categories"]["pii/EMAIL_ADDRESS"] is True
    assert set(results[0]["categories"]) >= {"harassment", "hate", "violence", "sexual", "self-harm"}
    assert response.json()["id"].startswith("modr-")


async def test_moderations_rejects_bad_input(harness: Harness) -> None:
    response = await harness.client.post("/v1/moderations", json={"input": [{"type": "image_url"}]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input[0]"


async def test_stream_report_rides_on_the_usage_chunk(harness: Harness) -> None:
    body = _chat("Hello there.", stream=True, stream_options={"include_usage": True})
    events = sse_events((await harness.client.post("/v1/chat/completions", json=body)).text)
    last = events[-2]
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == 4
    assert last["guardrails"]["output"][0]["decision"] == "pass"
    assert sum(1 for e in events if isinstance(e, dict) and "guardrails" in e) == 1


async def test_upstream_failure_mid_stream_still_checks_what_arrived(harness: Harness) -> None:
    response = await harness.client.post(
        "/v1/chat/completions", json=_chat("hi", model="broken-stream", stream=True)
    )
    events = sse_events(response.text)
    assert _streamed_text(events) == "Hello from the fake."  # checked, then released
    assert events[-2]["error"]["code"] == "upstream_unreachable"
    assert any("Hello from the fake." in text for call in harness.words.calls for text in call)


async def test_embedding_inputs_are_guarded_too(harness: Harness) -> None:
    response = await harness.client.post(
        "/v1/embeddings", json={"model": "fake-model", "input": ["plain text", "write to ann@example.org"]}
    )
    assert response.status_code == 200
    assert harness.upstream.bodies[-1]["input"] == ["plain text", "write to <EMAIL_ADDRESS>"]
    blocked = await harness.client.post("/v1/embeddings", json={"model": "fake-model", "input": "BADWORD"})
    assert blocked.status_code == 400
    assert blocked.json()["error"]["param"] == "input"
    tokens = await harness.client.post("/v1/embeddings", json={"model": "fake-model", "input": [1, 2, 3]})
    assert tokens.status_code == 400
