"""The ``revise`` action on streams (``buffer`` mode), with a scripted critic: what the client sees.

The echo model streams the user's text back in three-character chunks; windows end at a sentence end once
they hold 24 characters, so a calm first sentence is released before a toxic second one is judged.
"""

from __future__ import annotations

from typing import Any

import pytest

from feedback.events import CompletionEvent, RevisionEvent
from guards.policy import Action, Policy, Rule
from tests.support.fake_upstream import DEFAULT_REVISION, THINKER_ANSWER
from tests.support.revise_gateway import book, gateway, revise
from tests.support.sse import sse_events

CALM = "Thanks for asking, here it is."  # 30 characters and a sentence end: its own window
TOXIC = " You BADWORD, go away now."
REST = " The rest of the answer is long and was never needed here."


class Streamed:
    """A streamed response as the client reads it: per choice its text and finish reasons, the report."""

    def __init__(self, response: Any) -> None:
        assert response.status_code == 200
        self.events = [e for e in sse_events(response.text) if e != "[DONE]"]
        self.report = self.events[-1]["guardrails"]

    def text(self, index: int = 0, field: str = "content") -> str:
        return "".join(
            (c.get("delta") or {}).get(field) or (c.get("text") if field == "content" else None) or ""
            for e in self.events
            for c in e.get("choices") or ()
            if c["index"] == index
        )

    def finishes(self, index: int = 0) -> list[str]:
        return [
            c["finish_reason"]
            for e in self.events
            for c in e.get("choices") or ()
            if c["index"] == index and c.get("finish_reason")
        ]

    def choice_report(self, index: int = 0) -> dict[str, Any]:
        report: dict[str, Any] = self.report["output"][index]
        return report


# --- a revision that passes ----------------------------------------------------------------------


async def test_a_toxic_first_window_is_revised_whole_and_streamed_in_its_place() -> None:
    async with gateway(book(revise())) as gw:
        streamed = Streamed(await gw.chat("you BADWORD, streamed", stream=True))
        critic_calls = gw.critic_bodies()
    assert streamed.text() == DEFAULT_REVISION
    assert streamed.finishes() == ["stop"]
    report = streamed.choice_report()
    assert (report["decision"], report["revised"]) == ("revise", True)
    (round_,) = report["revision"]["rounds"]
    assert (round_["before"], round_["after"]) == ({"toxicity": "revise"}, {"toxicity": "pass"})
    assert "shown_chars" not in report["revision"]  # nothing had been released
    assert "Already shown" not in critic_calls[1]["messages"][-1]["content"]


async def test_released_text_is_kept_and_the_revision_continues_it() -> None:
    async with gateway(book(revise())) as gw:
        gw.upstream.critic_replies = ["It insults the reader.", "Let me put that more kindly."]
        streamed = Streamed(await gw.chat(CALM + TOXIC + REST, stream=True))
        critic_calls = gw.critic_bodies()
    assert streamed.text() == CALM + " Let me put that more kindly."
    assert streamed.finishes() == ["stop"]
    report = streamed.choice_report()
    assert report["revised"] is True
    assert report["revision"]["shown_chars"] == len(CALM) + 1  # a window ends after the sentence's space
    # The critic critiques the answer so far, and rewrites only what follows the released text.
    critique_asked = critic_calls[0]["messages"][-1]["content"]
    answer_shown = critique_asked.split("\n\nAnswer:\n")[1].split("\n\n")[0]
    assert answer_shown == CALM + TOXIC + " "  # what came after the failing window is not waited for
    revision_asked = critic_calls[1]["messages"][-1]["content"]
    assert f"Already shown to the reader (keep it: it cannot be changed):\n{CALM} \n" in revision_asked
    assert f"Rest of the answer:\n{TOXIC.strip()} \n" in revision_asked


async def test_a_critic_that_repeats_the_released_text_does_not_duplicate_it() -> None:
    async with gateway(book(revise())) as gw:
        gw.upstream.critic_replies = ["critique", CALM + " Be kind."]
        streamed = Streamed(await gw.chat(CALM + TOXIC + REST, stream=True))
    assert streamed.text() == CALM + " Be kind."


async def test_the_upstream_is_stopped_before_the_critic_is_asked() -> None:
    async with gateway(book(revise())) as gw:
        streamed = Streamed(await gw.chat(CALM + TOXIC + REST * 20, stream=True))
        assert gw.upstream.closed_before_critic == [True, True]
    assert REST.strip() not in streamed.text()


async def test_the_revision_is_rechecked_and_redacted_by_every_output_rule() -> None:
    async with gateway(book(revise(), Rule(guard="pii", action=Action.REDACT))) as gw:
        gw.upstream.critic_replies = ["critique", "Write to sam@example.org instead."]
        streamed = Streamed(await gw.chat(CALM + TOXIC + REST, stream=True))
    assert streamed.text() == CALM + " Write to <EMAIL_ADDRESS> instead."
    assert streamed.choice_report()["revision"]["rounds"][0]["after"] == {"toxicity": "pass", "pii": "redact"}


async def test_a_second_round_revises_a_revision_that_still_fails() -> None:
    async with gateway(book(revise(max_rounds=2))) as gw:
        gw.upstream.critic_replies = ["c1", "still BADWORD", "c2", "Fine words now."]
        streamed = Streamed(await gw.chat(CALM + TOXIC, stream=True))
    assert streamed.text() == CALM + " Fine words now."
    rounds = streamed.choice_report()["revision"]["rounds"]
    assert [r["after"] for r in rounds] == [{"toxicity": "revise"}, {"toxicity": "pass"}]


async def test_legacy_completions_streams_are_revised_in_their_text() -> None:
    async with gateway(book(revise())) as gw:
        body = {"model": "echo", "prompt": "you BADWORD", "stream": True}
        streamed = Streamed(await gw.client.post("/v1/completions", json=body))
    assert streamed.text() == DEFAULT_REVISION
    assert streamed.finishes() == ["stop"]
    assert streamed.choice_report()["revised"] is True


async def test_with_n_2_only_the_offending_choice_is_revised_and_the_other_streams_on() -> None:
    async with gateway(book(revise())) as gw:
        kind = "A kind answer. It goes on for a while, kindly."
        streamed = Streamed(await gw.chat(f"{kind}||{CALM}{TOXIC}{REST}", stream=True, n=2))
    assert streamed.text(0) == kind
    assert streamed.finishes(0) == ["stop"]
    assert streamed.text(1) == CALM + " " + DEFAULT_REVISION
    assert streamed.finishes(1) == ["stop"]
    assert "revised" not in streamed.choice_report(0)
    assert streamed.choice_report(1)["revised"] is True


# --- fallbacks -----------------------------------------------------------------------------------


def _fell_back(streamed: Streamed, fallback: str, reason: str) -> dict[str, Any]:
    report = streamed.choice_report()
    assert report["revised"] is False
    assert report["revision"]["fallback"] == fallback
    assert reason in report["revision"]["reason"]
    revision: dict[str, Any] = report["revision"]
    return revision


async def test_a_revision_still_toxic_falls_back_to_block_after_the_released_text() -> None:
    async with gateway(book(revise())) as gw:
        gw.upstream.critic_replies = ["critique", "you BADWORD again"]
        streamed = Streamed(await gw.chat(CALM + TOXIC + REST, stream=True))
    assert streamed.text() == CALM + " "  # released text stands; nothing of the failing window went out
    assert streamed.finishes() == ["content_filter"]
    revision = _fell_back(streamed, "block", "still failed the output guards after 1 round")
    assert revision["shown_chars"] == len(CALM) + 1
    assert len(revision["rounds"]) == 1


async def test_a_critic_timeout_falls_back_within_the_budget() -> None:
    async with gateway(book(revise(critic_model="slow-critic", timeout_ms=100))) as gw:
        gw.upstream.critic_delay_s = 30.0  # a hang bound: the budget must end it long before
        streamed = Streamed(await gw.chat(CALM + TOXIC, stream=True))
    assert streamed.text() == CALM + " "
    assert streamed.finishes() == ["content_filter"]
    _fell_back(streamed, "block", "ran out of its time budget (100 ms)")


async def test_a_critic_error_falls_back() -> None:
    async with gateway(book(revise(critic_model="plain-503"))) as gw:
        streamed = Streamed(await gw.chat(CALM + TOXIC, stream=True))
    assert streamed.finishes() == ["content_filter"]
    _fell_back(streamed, "block", "the critic 'plain-503' failed")


async def test_a_milder_fallback_lets_the_original_stream_go_on() -> None:
    async with gateway(book(revise(fallback=Action.FLAG))) as gw:
        gw.upstream.critic_replies = ["critique", "you BADWORD again"]
        streamed = Streamed(await gw.chat(CALM + TOXIC + REST, stream=True))
        assert gw.upstream.closed_before_critic == [False, False]  # paused, not stopped: it may be needed
    assert streamed.text() == CALM + TOXIC + REST
    assert streamed.finishes() == ["stop"]
    assert streamed.choice_report()["decision"] == "flag"
    _fell_back(streamed, "flag", "still failed the output guards")


@pytest.mark.parametrize(
    ("model", "field"), [("thinker", "reasoning_content"), ("tool-echo", "tool_calls[0].function.arguments")]
)
@pytest.mark.parametrize("stream", [True, False])
async def test_reasoning_and_tool_calls_are_not_revised_and_get_the_fallback(
    model: str, field: str, stream: bool
) -> None:
    where = ("choices[0]." if stream else "message.") + field
    async with gateway(book(revise())) as gw:
        response = await gw.chat("you BADWORD, said in passing", model=model, stream=stream)
        assert [body["model"] for body in gw.upstream.bodies] == [model]  # no critic was asked
    if stream:
        streamed = Streamed(response)
        assert streamed.finishes() == ["content_filter"]
        assert THINKER_ANSWER not in streamed.text()
        assert "BADWORD" not in response.text.split('"guardrails"')[0]
        report = streamed.choice_report()
    else:
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "content_filter"
        assert "BADWORD" not in str(choice)
        report = response.json()["guardrails"]["output"][0]
    assert report["revised"] is False
    assert report["revision"]["fallback"] == "block"
    reason = f"revise applies to an answer's text content only, and {where} failed"
    assert report["revision"]["reason"] == reason


# --- AI feedback ---------------------------------------------------------------------------------


async def test_a_streamed_revision_is_recorded_with_the_answer_so_far_as_rejected() -> None:
    async with gateway(book(revise())) as gw:
        gw.upstream.critic_replies = ["critique", "Kinder words."]
        await gw.chat(CALM + TOXIC + REST, stream=True)
    (revision,) = [e for e in gw.recorder.events if isinstance(e, RevisionEvent)]
    (completion,) = [e for e in gw.recorder.events if isinstance(e, CompletionEvent)]
    assert revision.partial is True
    assert revision.rejected == CALM + TOXIC + " "  # up to where the stream was stopped
    assert revision.chosen == CALM + " Kinder words."
    assert revision.request_id == completion.id
    assert completion.choices[0]["message"]["content"] == CALM + " Kinder words."


async def test_a_disclaimer_drawn_before_the_revision_still_ends_the_answer() -> None:
    first = "Mail me at sam@example.org please. "  # its own window: annotated, released
    async with gateway(book(revise(), Rule(guard="pii", action=Action.ANNOTATE))) as gw:
        gw.upstream.critic_replies = ["critique", "Kinder words."]
        streamed = Streamed(await gw.chat(first + "You BADWORD, go.", stream=True))
    assert streamed.text() == first + "Kinder words." + Policy().disclaimer
    assert streamed.finishes() == ["stop"]
