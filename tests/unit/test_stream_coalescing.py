"""Windows coalesce under load: in ``buffer`` mode, while the guards are busy with other checks, text that
arrived during a check is judged as one larger window. Unloaded, a window stays a sentence. Either way
no character reaches the client before a window holding it passed, and every character is judged.

Real ``StreamGuard``s and ``GuardEngine``; the guard is a stand-in that takes a few milliseconds per
check, blocks a marker word, and keeps every text it judged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import msgspec
import pytest

from gateway.guarded.guardrails import Guardrails, ResolvedPolicy
from gateway.guarded.stream_guard import StreamGuard
from guards.pipeline import GuardEngine
from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule, StreamPolicy
from guards.verdict import JudgeContext, Stage, Verdict

pytestmark = pytest.mark.asyncio

SENTENCES = [f"Sentence number {word} of the calm answer is here." for word in "abcdefghijklmnop"]
ANSWER = " ".join(SENTENCES)
FORBIDDEN = "FORBIDDEN"


class _NoConfig(msgspec.Struct):
    pass


class SlowMarkerGuard:
    """Blocks texts holding FORBIDDEN; each check takes ``delay`` seconds; keeps what it judged."""

    kind: ClassVar[str] = "marker"
    stages: ClassVar[frozenset[Stage]] = frozenset(Stage)
    config_type: ClassVar[type[msgspec.Struct]] = _NoConfig
    default_thresholds: ClassVar[Mapping[str, float]] = {"marker": 0.5}

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.judged: list[str] = []

    @property
    def name(self) -> str:
        return "marker"

    @property
    def categories(self) -> Sequence[str]:
        return ["marker"]

    async def start(self) -> None:
        pass

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        await asyncio.sleep(self.delay)
        self.judged.extend(texts)
        return [
            Verdict(
                "marker", FORBIDDEN not in t, {"marker": float(FORBIDDEN in t)}, ["marker"] * (FORBIDDEN in t)
            )
            for t in texts
        ]

    async def close(self) -> None:
        pass


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


async def _streams(guard: SlowMarkerGuard, texts: list[str], max_chars: int = 400) -> list[tuple[str, int]]:
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
    guard = SlowMarkerGuard(delay=0.002)
    ((text, chunks),) = await _streams(guard, [ANSWER])
    assert text == ANSWER
    assert chunks == len(SENTENCES)  # one release per sentence, as before
    assert len(guard.judged) == len(SENTENCES)


async def test_under_load_windows_coalesce_and_every_character_is_still_judged() -> None:
    guard = SlowMarkerGuard(delay=0.005)
    results = await _streams(guard, [ANSWER] * 4)
    assert [text for text, _ in results] == [ANSWER] * 4
    # Fewer, larger checks than one per sentence for each stream (4 streams of 16 sentences).
    assert len(guard.judged) < 4 * len(SENTENCES)
    assert max(len(t) for t in guard.judged) > 2 * max(map(len, SENTENCES))
    assert all(len(t) <= 400 + 16 for t in guard.judged)  # a window is still at most max_chars (+ context)
    assert _covered(ANSWER, guard.judged) == set(range(len(ANSWER)))


async def test_a_forbidden_sentence_never_reaches_the_client_when_windows_coalesce() -> None:
    hostile = " ".join([*SENTENCES[:9], f"Now the {FORBIDDEN} part arrives.", *SENTENCES[9:]])
    guard = SlowMarkerGuard(delay=0.005)
    results = await _streams(guard, [hostile, ANSWER, ANSWER])
    text, _ = results[0]
    assert FORBIDDEN not in text
    assert hostile.startswith(text)  # what went out is a prefix of the answer, released before the block
    assert [t for t, _ in results[1:]] == [ANSWER, ANSWER]  # the other clients are untouched
