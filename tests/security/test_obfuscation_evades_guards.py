"""Threat: obfuscated text (zero-width and format characters, fullwidth forms, look-alike letters,
combining marks, spaced or dotted letters, leetspeak) slips past guards that read it as sent, while a
reader still sees the word.

Guards read a normalised view (``guards.normalise``); what they find is mapped back, so reports and
redactions refer to the text the client sent. The real toxicity model's recall on obfuscated text is
measured in test_obfuscated_toxicity_recall.py.
"""

from __future__ import annotations

import unicodedata
from typing import Any, ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st

from guards.normalise import TextView, normalise
from guards.policy import Action, Policy, PolicyBook, Rule, StreamPolicy
from tests.support.fake_guards import EmailGuard, WordGuard
from tests.support.fake_upstream import FakeUpstream
from tests.support.policy_harness import chat, guarded_client
from tests.support.sse import sse_events


class ClassifierWordGuard(WordGuard):
    """The word guard reading as a classifier does: the deobfuscated view (like the toxicity guard)."""

    view: ClassVar[TextView] = TextView.DEOBFUSCATED


TOXIC_INPUT = PolicyBook(default=Policy(input=[Rule(guard="toxicity")]))
PII_INPUT = PolicyBook(default=Policy(input=[Rule(guard="pii", action=Action.REDACT)]))


async def _input_status(text: str, guard: WordGuard) -> int:
    async with guarded_client(TOXIC_INPUT, {"toxicity": guard}) as client:
        response = await client.post("/v1/chat/completions", json=chat(text))
    return response.status_code


# --- every guard: invisible characters and compatibility forms ----------------------------------


async def test_zero_width_characters_do_not_hide_a_word_from_any_guard() -> None:
    for text in ["say BAD\u200bWORD", "say B\u200dA\u2060D\ufeffWORD", "say BAD\u00adWO\u202eRD"]:
        assert await _input_status(text, WordGuard()) == 400, ascii(text)


async def test_fullwidth_and_styled_letters_do_not_hide_a_word_from_any_guard() -> None:
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "BADWORD")
    bold = "".join(chr(0x1D400 + ord(c) - ord("A")) for c in "BADWORD")  # MATHEMATICAL BOLD CAPITAL
    for text in [f"say {fullwidth}", f"say {bold}"]:
        assert await _input_status(text, WordGuard()) == 400, text


async def test_an_email_split_by_invisible_characters_is_redacted_whole_in_the_original() -> None:
    upstream = FakeUpstream()
    sent = "mail bob\u200b@exa\u2060mple.com today"
    async with guarded_client(PII_INPUT, {"pii": EmailGuard()}, upstream) as client:
        response = await client.post("/v1/chat/completions", json=chat(sent))
    assert response.status_code == 200
    assert upstream.bodies[-1]["messages"][0]["content"] == "mail <EMAIL_ADDRESS_1> today"


async def test_report_spans_point_into_the_text_as_sent() -> None:
    sent = "ｍａｉｌ\u200b ｂｏｂ＠ｅｘａｍｐｌｅ．ｃｏｍ, ﬁne"  # noqa: RUF001
    async with guarded_client(PII_INPUT, {"pii": EmailGuard()}) as client:
        response = await client.post("/v1/chat/completions", json=chat(sent))
    (span,) = response.json()["guardrails"]["input"]["guards"][0]["spans"]
    assert sent[span["start"] : span["end"]] == "ｂｏｂ＠ｅｘａｍｐｌｅ．ｃｏｍ"  # noqa: RUF001


async def test_an_obfuscated_answer_is_blocked_on_output_streamed_or_not() -> None:
    book = PolicyBook(
        default=Policy(
            output=[Rule(guard="toxicity")], stream=StreamPolicy(min_chars=10, max_chars=40, overlap_chars=12)
        )
    )
    answer = "sure: " + "B\u200bA\u200bD\u200bW\u200bO\u200bR\u200bD"
    async with guarded_client(book, {"toxicity": WordGuard()}) as client:
        whole = await client.post("/v1/chat/completions", json=chat(answer, model="echo"))
        streamed = await client.post("/v1/chat/completions", json=chat(answer, model="echo", stream=True))
    assert whole.json()["choices"][0]["finish_reason"] == "content_filter"
    events: list[dict[str, Any]] = [e for e in sse_events(streamed.text) if isinstance(e, dict)]
    finishes = [c.get("finish_reason") for e in events for c in e.get("choices", [])]
    assert "content_filter" in finishes
    assert "BADWORD" not in streamed.text.replace("\u200b", "").replace("\\u200b", "")


# --- classifiers: look-alikes, marks, spacing, leetspeak ------------------------------------------


async def test_look_alikes_marks_spacing_and_leetspeak_do_not_hide_a_word_from_a_classifier() -> None:
    attacks = [
        "say ВАDWОRD",  # Cyrillic В, А, О  # noqa: RUF001, RUF003
        "say ΒΑDWΟRD",  # Greek Β, Α, Ο  # noqa: RUF001, RUF003
        "say B\u0336A\u0336D\u0336W\u0336O\u0336R\u0336D\u0336",  # strike-through marks
        "say BÁDWÖRD",
        "say B A D W O R D",
        "say B.A.D.W.O.R.D",
        "say B-A-D-W-O-R-D",
        "say B4DW0RD",
        "say B.4.D.W.0.R.D",
    ]
    for text in attacks:
        assert await _input_status(text, ClassifierWordGuard()) == 400, text
        assert await _input_status(text, WordGuard()) == 200, text  # the canonical view keeps them


async def test_a_classifier_view_leaves_clean_text_readable() -> None:
    for text, view in [
        ("Привет, как у тебя дела?", "Привет, как у тебя дела?"),  # real Cyrillic words stay  # noqa: RUF001
        ("Our l33t club has 42 members and $100", "Our leet club has 42 members and $100"),
        ("See you at 10.30, okay!", "See you at 10.30, okay!"),
    ]:
        assert normalise(text, TextView.DEOBFUSCATED).text == view


# --- the offset map ----------------------------------------------------------------------------

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e", "\U000e0041", "\x07"]


@st.composite
def disguised(draw: st.DrawFn) -> tuple[str, str]:
    """An ASCII text, and the same text with invisible characters, fullwidth forms and decomposed
    accents mixed in: the second's canonical view is the first (with é for e + U+0301)."""
    plain = draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
    sent = []
    for char in plain:
        sent += draw(st.lists(st.sampled_from(INVISIBLE), max_size=2))
        how = draw(st.sampled_from(["same", "fullwidth", "accent"]))
        if how == "fullwidth" and char != " ":
            sent.append(chr(ord(char) + 0xFEE0))
        elif how == "accent" and char == "e":
            sent.append("e\u0301")
        else:
            sent.append(char)
    return plain, "".join(sent)


@settings(max_examples=300, deadline=None)
@given(disguised(), st.data())
def test_any_span_of_the_canonical_view_maps_back_onto_the_same_text_as_sent(
    pair: tuple[str, str], data: st.DataObject
) -> None:
    _, sent = pair
    view = normalise(sent, TextView.CANONICAL)
    assert view.text == unicodedata.normalize("NFKC", "".join(c for c in sent if c not in INVISIBLE))
    start = data.draw(st.integers(0, len(view.text)))
    end = data.draw(st.integers(start, len(view.text)))
    original_start, original_end = view.span_to_original(start, end)
    assert 0 <= original_start <= original_end <= len(sent)
    assert normalise(sent[original_start:original_end], TextView.CANONICAL).text == view.text[start:end]


def test_format_characters_are_all_invisible_to_guards() -> None:
    format_characters = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf"]
    text = "a".join(format_characters)
    assert normalise(text, TextView.CANONICAL).text == "a" * (len(format_characters) - 1)
