"""Windows coalesce under load: in ``buffer`` mode, while the guards are busy with other checks, text that
arrived during a check is judged as one larger window. Unloaded, a window stays a sentence. Either way
no character reaches the client before a window holding it passed, and every character is judged. And
a text's later windows may wait to share a model call (``patience_ms``) only while the guards are ahead
of the upstream.

Real ``StreamGuard``s and ``GuardEngine``; the guard is the suite's word guard, slowed to a few
milliseconds per check, blocking a marker word and keeping every text it judged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.guarded.guardrails import Guardrails, ResolvedPolicy
from gateway.guarded.stream_guard import StreamGuard
from guards.pipeline import GuardEngine
from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule, StreamPolicy
from guards.verdict import JudgeContext, Stage
from tests.support.fake_guards import WordGuard

pytestmark = pytest.mark.asyncio

SENTENCES = [f"Sentence number {word} of the calm answer is here." for word in "abcdefghijklmnop"]
ANSWER = " ".join(SENTENCES)
FORBIDDEN = "FORBIDDEN"


def _slow_guard(delay: float) -> WordGuard:
    """Blocks texts holding FORBIDDEN; each check takes ``delay`` seconds; keeps what it judged."""
    guard = WordGuard("marker", trigger=FORBIDDEN)
    guard.delay_s = delay
    return guard


def _judged(guard: WordGuard) -> list[str]:
    return [text for call in guard.calls for text in call]


async def _upstream(text: str) -> AsyncIterator[dict[str, Any]]:
    """An instant upstream: a word a chunk, yielding to the loop between chunks."""
    for i, word in enumerate(text.split(" ")):
        delta = {"content": word if i == 0 else " " + word}
        yield {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        await asyncio.sleep(0)
    yield {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


async def _read(guard: StreamGuard, text: str) -> tuple[str, int]:
    """What the client got, and in how many text chunks."""
    out = []
    async for chunk in guard.run(_upstream(text)):
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:
                out.append(content)
    return "".join(out), len(out)


async def _streams(guard: WordGuard, texts: list[str], max_chars: int = 400) -> list[tuple[str, int]]:
    engine = GuardEngine({"marker": guard})
    windows = StreamPolicy(min_chars=24, max_chars=max_chars, overlap_chars=16)
    policy = Policy(output=[Rule(guard="marker", action=Action.BLOCK)], stream=windows)
    guardrails = Guardrails(engine, PolicyBook(default=policy), {"marker": GuardSpec(type="marker")})
    resolved = ResolvedPolicy("p", policy)
    return list(await asyncio.gather(*(_read(StreamGuard(guardrails, resolved, "chat"), t) for t in texts)))


def _covered(text: str, judged: list[str]) -> set[int]:
    covered: set[int] = set()
    for item in judged:
        start = text.find(item)
        while start >= 0:
            covered.update(range(start, start + len(item)))
            start = text.find(item, start + 1)
    return covered


async def test_unloaded_a_window_stays_a_sentence() -> None:
    guard = _slow_guard(0.002)
    ((text, chunks),) = await _streams(guard, [ANSWER])
    assert text == ANSWER
    assert chunks == len(SENTENCES)  # one release per sentence, as before
    assert len(_judged(guard)) == len(SENTENCES)


async def test_under_load_windows_coalesce_and_every_character_is_still_judged() -> None:
    guard = _slow_guard(0.005)
    results = await _streams(guard, [ANSWER] * 4)
    assert [text for text, _ in results] == [ANSWER] * 4
    # Fewer, larger checks than one per sentence for each stream (4 streams of 16 sentences).
    assert len(_judged(guard)) < 4 * len(SENTENCES)
    assert max(len(t) for t in _judged(guard)) > 2 * max(map(len, SENTENCES))
    assert all(len(t) <= 400 + 16 for t in _judged(guard))  # a window is still at most max_chars (+ context)
    assert _covered(ANSWER, _judged(guard)) == set(range(len(ANSWER)))


async def test_a_forbidden_sentence_never_reaches_the_client_when_windows_coalesce() -> None:
    hostile = " ".join([*SENTENCES[:9], f"Now the {FORBIDDEN} part arrives.", *SENTENCES[9:]])
    guard = _slow_guard(0.005)
    results = await _streams(guard, [hostile, ANSWER, ANSWER])
    text, _ = results[0]
    assert FORBIDDEN not in text
    assert hostile.startswith(text)  # what went out is a prefix of the answer, released before the block
    assert [t for t, _ in results[1:]] == [ANSWER, ANSWER]  # the other clients are untouched


async def _two_choices(first: str, second: str) -> AsyncIterator[dict[str, Any]]:
    """An instant upstream with ``n=2``: the two choices' words interleaved, a chunk each."""
    for index, words in enumerate(zip(first.split(" "), second.split(" "), strict=True)):
        for choice, word in enumerate(words):
            delta = {"content": word if index == 0 else " " + word}
            yield {"id": "c", "choices": [{"index": choice, "delta": delta, "finish_reason": None}]}
            await asyncio.sleep(0)
    for choice in (0, 1):
        yield {"id": "c", "choices": [{"index": choice, "delta": {}, "finish_reason": "stop"}]}


async def test_two_choices_coalesced_under_load_each_get_their_own_text_whole() -> None:
    """Text of one choice left unjudged while the other's arrived is judged once the upstream pauses,
    never mixed with the other choice's."""
    other = " ".join(s.replace("calm", "other") for s in SENTENCES)
    guard = _slow_guard(0.005)
    engine = GuardEngine({"marker": guard})
    policy = Policy(output=[Rule(guard="marker", action=Action.BLOCK)], stream=StreamPolicy(overlap_chars=16))
    guardrails = Guardrails(engine, PolicyBook(default=policy), {"marker": GuardSpec(type="marker")})
    resolved = ResolvedPolicy("p", policy)

    async def read_two() -> dict[int, str]:
        got: dict[int, list[str]] = {0: [], 1: []}
        async for chunk in StreamGuard(guardrails, resolved, "chat", choices=2).run(
            _two_choices(ANSWER, other)
        ):
            for choice in chunk.get("choices") or ():
                got[choice["index"]].append((choice.get("delta") or {}).get("content") or "")
        return {index: "".join(parts) for index, parts in got.items()}

    third = " ".join(s.replace("calm", "third") for s in SENTENCES)
    beside = StreamGuard(guardrails, resolved, "chat")  # another client on the same guards: the load
    texts, (alone, _) = await asyncio.gather(read_two(), _read(beside, third))
    assert texts == {0: ANSWER, 1: other}
    assert alone == third
    judged = _judged(guard)
    assert len(judged) < 3 * len(SENTENCES)  # they did coalesce
    # No window mixes the choices (or the other client): each is a piece of exactly one text.
    assert all([t in ANSWER, t in other, t in third].count(True) == 1 for t in judged), judged
    assert _covered(ANSWER, judged) == set(range(len(ANSWER)))
    assert _covered(other, judged) == set(range(len(other)))


async def _paced(text: str, pause_s: float) -> AsyncIterator[dict[str, Any]]:
    """An upstream at an LLM's pace: a word a chunk, ``pause_s`` apart."""
    for i, word in enumerate(text.split(" ")):
        yield {"id": "c", "choices": [{"index": 0, "delta": {"content": word if i == 0 else " " + word}}]}
        await asyncio.sleep(pause_s)
    yield {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


async def _all_at_once(text: str) -> AsyncIterator[dict[str, Any]]:
    """An upstream far ahead of the guards: every chunk is there before the first check."""
    for i, word in enumerate(text.split(" ")):
        yield {"id": "c", "choices": [{"index": 0, "delta": {"content": word if i == 0 else " " + word}}]}
    yield {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


async def _patience_seen(upstream: AsyncIterator[dict[str, Any]], patience_ms: float) -> list[float]:
    guard = WordGuard("marker", trigger=FORBIDDEN)
    windows = StreamPolicy(min_chars=24, max_chars=400, overlap_chars=16, patience_ms=patience_ms)
    policy = Policy(output=[Rule(guard="marker", action=Action.BLOCK)], stream=windows)
    guardrails = Guardrails(GuardEngine({"marker": guard}), PolicyBook(default=policy), {})
    stream = StreamGuard(guardrails, ResolvedPolicy("p", policy), "chat")
    text = "".join(
        (choice.get("delta") or {}).get("content") or ""
        for chunk in [c async for c in stream.run(upstream)]
        for choice in chunk.get("choices") or ()
    )
    assert text == " ".join(SENTENCES[:4])
    return [context.patience_s if context is not None else -1.0 for context in guard.contexts]


async def test_at_an_llms_pace_a_texts_later_windows_may_wait_to_share_a_model_call() -> None:
    seen = await _patience_seen(_paced(" ".join(SENTENCES[:4]), 0.005), patience_ms=20)
    assert len(seen) == 4
    assert seen[0] == 0.0  # the first window: the first token comes first
    assert seen[1:3] == [0.02] * 2  # the reader is reading the sentence before; no more text is here
    assert seen[3] == 0.0  # the tail, checked when the answer ended: the client waits for its end


async def test_guards_behind_the_upstream_never_wait() -> None:
    seen = await _patience_seen(_all_at_once(" ".join(SENTENCES[:4])), patience_ms=20)
    assert seen
    assert set(seen) == {0.0}


async def test_patience_zero_never_waits() -> None:
    seen = await _patience_seen(_paced(" ".join(SENTENCES[:4]), 0.005), patience_ms=0)
    assert set(seen) == {0.0}


async def test_patience_leaves_half_of_a_rules_time_out_to_the_check() -> None:
    """A rule whose time-out is short is never made to time out waiting for company."""
    guard = WordGuard("marker", trigger=FORBIDDEN)
    engine = GuardEngine({"marker": guard})
    rule = Rule(guard="marker", action=Action.BLOCK, timeout_ms=30)
    await engine.run(Stage.OUTPUT, [rule], ["Some text."], JudgeContext(patience_s=1.0))
    [context] = guard.contexts
    assert context is not None
    assert context.patience_s == 0.015
