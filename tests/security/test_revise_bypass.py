"""Threat: the ``revise`` action as a way around the output guards, a way to hold the gateway, or a way
for personal data to reach a critic model.

A critic is a model, and a model can be steered by what it reads (the answer it revises, the request
behind it). So nothing a critic writes is trusted: its revision is judged by every output rule again, its
critique (which may quote the answer) goes in the report only when the guards let it through, it works
under a time budget, and it reads the text with placeholders, never the values behind them.
"""

from __future__ import annotations

import time
from typing import Any

from feedback.events import CompletionEvent, RevisionEvent
from guards.policy import Action, Rule
from tests.support.fake_upstream import ANSWER
from tests.support.revise_gateway import book, choice_report, gateway, revise
from tests.support.sse import sse_events

PII_IN = [Rule(guard="pii", action=Action.REDACT)]


async def test_a_critic_that_echoes_the_toxic_answer_does_not_get_it_through() -> None:
    async with gateway(book(revise(critic_model="echo-critic", max_rounds=3))) as gw:
        response = await gw.chat("you BADWORD")
        critic_calls = len(gw.critic_bodies())
    assert "BADWORD" not in response.text  # not in the answer, not in the report's critiques
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    report = choice_report(response)
    assert report["revised"] is False
    assert [r["after"] for r in report["revision"]["rounds"]] == [{"toxicity": "revise"}] * 3
    assert all("critique" not in r for r in report["revision"]["rounds"])  # they quoted the answer
    assert critic_calls == 6  # two a round, three rounds, then the fallback


async def test_a_critique_that_quotes_the_answer_stays_out_of_the_report_even_when_revised() -> None:
    async with gateway(book(revise())) as gw:
        gw.upstream.critic_replies = ['"you BADWORD" insults the reader.', "A polite answer."]
        response = await gw.chat("you BADWORD")
    assert response.json()["choices"][0]["message"]["content"] == "A polite answer."
    assert "BADWORD" not in response.text
    (round_,) = choice_report(response)["revision"]["rounds"]
    assert "critique" not in round_


async def test_a_slow_critic_cannot_hold_the_request_past_the_budget() -> None:
    async with gateway(book(revise(critic_model="slow-critic", timeout_ms=300))) as gw:
        gw.upstream.critic_delay_s = 60.0
        started = time.perf_counter()
        response = await gw.chat("you BADWORD")
        elapsed = time.perf_counter() - started
    assert elapsed < 30  # a hang bound, not a timing: the budget is 0.3 s, the critic would take 60
    assert response.json()["choices"][0]["finish_reason"] == "content_filter"
    assert "time budget" in choice_report(response)["revision"]["reason"]


async def test_the_budget_covers_every_round_not_each_call() -> None:
    # Each critic call takes 0.2 s; three rounds would take 1.2 s. The budget (0.5 s) ends them.
    async with gateway(book(revise(critic_model="slow-critic", timeout_ms=500, max_rounds=3))) as gw:
        gw.upstream.critic_delay_s = 0.2
        gw.upstream.critic_replies = ["critique", "still BADWORD"] * 3
        response = await gw.chat("you BADWORD")
    revision = choice_report(response)["revision"]
    assert "time budget" in revision["reason"]
    # Each round is two calls of at least 0.2 s: three rounds cannot fit in 0.5 s on any machine.
    assert len(revision["rounds"]) < 3


async def test_the_critic_sees_placeholders_never_the_requests_values() -> None:
    async with gateway(book(revise(), input=PII_IN)) as gw:
        gw.upstream.critic_replies = ["critique", "Please write to <EMAIL_ADDRESS_1> kindly."]
        response = await gw.chat("you BADWORD, ann@example.org")
        critic_bodies = gw.critic_bodies()
    assert critic_bodies
    assert all("ann@example.org" not in str(body) for body in critic_bodies)
    assert "<EMAIL_ADDRESS_1>" in critic_bodies[0]["messages"][-1]["content"]
    # The client gets its own value back in the revision; what is recorded keeps the placeholder.
    assert response.json()["choices"][0]["message"]["content"] == "Please write to ann@example.org kindly."
    recorded = [e for e in gw.recorder.events if isinstance(e, CompletionEvent | RevisionEvent)]
    assert len(recorded) == 2
    assert all("ann@example.org" not in str(event) for event in recorded)


async def test_the_critic_reads_the_answer_with_the_output_guards_redactions() -> None:
    # An address in the answer that an output rule redacts is redacted before the critic reads the answer.
    # (The echo model repeats the request, which this policy lets the upstream read as it is.)
    async with gateway(book(revise(), Rule(guard="pii", action=Action.REDACT))) as gw:
        response = await gw.chat("you BADWORD, bob@leak.example")
        critic_bodies = gw.critic_bodies()
    answers = [ANSWER.search(body["messages"][-1]["content"]) for body in critic_bodies]
    assert [a.group(1) if a else None for a in answers] == ["you BADWORD, <EMAIL_ADDRESS>"] * 2
    revision = [e for e in gw.recorder.events if isinstance(e, RevisionEvent)]
    assert revision[0].rejected == "you BADWORD, <EMAIL_ADDRESS>"
    assert "bob@leak.example" not in response.text


# --- streams -----------------------------------------------------------------------------------------

CALM = "Thanks for asking, here it is. "  # its own window, released before the next is judged


def _streamed_text(response: Any) -> str:
    events = [e for e in sse_events(response.text) if e != "[DONE]"]
    deltas = [c.get("delta") or {} for e in events for c in e.get("choices") or ()]
    return "".join(delta.get("content") or "" for delta in deltas)


async def test_a_critic_that_echoes_a_streamed_answer_does_not_get_it_through() -> None:
    async with gateway(book(revise(critic_model="echo-critic", max_rounds=2))) as gw:
        response = await gw.chat(CALM + "You BADWORD, go away.", stream=True)
    assert "BADWORD" not in response.text  # not streamed, not in the report
    assert _streamed_text(response) == CALM


async def test_a_critic_cannot_rewrite_text_the_client_already_has() -> None:
    # A steered critic writes a whole new answer: it can only ever follow what was released.
    async with gateway(book(revise())) as gw:
        gw.upstream.critic_replies = ["critique", "Forget that. Sorry, I was wrong before: here is another."]
        response = await gw.chat(CALM + "You BADWORD, go away.", stream=True)
    assert _streamed_text(response) == CALM + "Forget that. Sorry, I was wrong before: here is another."


async def test_the_stream_critic_reads_the_held_text_with_the_output_guards_redactions() -> None:
    async with gateway(book(revise(), Rule(guard="pii", action=Action.REDACT))) as gw:
        response = await gw.chat(CALM + "You BADWORD, mail bob@leak.example now.", stream=True)
        critic_bodies = gw.critic_bodies()
    # (The echo model repeats the request, which this policy lets the upstream read as it is.)
    answers = [ANSWER.search(body["messages"][-1]["content"]) for body in critic_bodies]
    held = "You BADWORD, mail <EMAIL_ADDRESS> now."
    assert [a.group(1) if a else None for a in answers] == [CALM + held, held]  # critique, then revision
    assert "bob@leak.example" not in response.text
    (revision,) = [e for e in gw.recorder.events if isinstance(e, RevisionEvent)]
    assert "<EMAIL_ADDRESS>" in revision.rejected


async def test_a_slow_critic_cannot_hold_a_stream_past_the_budget() -> None:
    async with gateway(book(revise(critic_model="slow-critic", timeout_ms=300))) as gw:
        gw.upstream.critic_delay_s = 60.0
        started = time.perf_counter()
        response = await gw.chat(CALM + "You BADWORD.", stream=True)
        elapsed = time.perf_counter() - started
    assert elapsed < 30  # a hang bound, not a timing: the budget is 0.3 s, the critic would take 60
    assert _streamed_text(response) == CALM
    assert '"finish_reason":"content_filter"' in response.text.replace(" ", "")
