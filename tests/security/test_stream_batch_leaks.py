"""Windows of concurrent streams are judged together, in one batch of the shared model runner: a hostile
client must not get another client's text (or its own text judged with another's), and batching must
not leave a character of any stream unjudged.

Two streams run at once through real ``StreamGuard``s, a real ``GuardEngine`` and one shared
``BatchingRunner``; the guard is a stand-in PII model that finds e-mail addresses, so the test needs no
model.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import msgspec
import pytest

from gateway.guarded.guardrails import Guardrails, ResolvedPolicy
from gateway.guarded.stream_guard import StreamGuard
from guards.pipeline import GuardEngine
from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule, StreamPolicy
from guards.runner import BatchingRunner
from guards.verdict import JudgeContext, Span, Stage, Verdict

pytestmark = pytest.mark.asyncio

_EMAIL = re.compile(r"[\w.]+@[\w.]+\.\w+")
SECRET = "Write to ann.private@example.org for the files."
ALICE = "The harbour opens early. " + SECRET + " The ferry leaves at noon. Bring a warm coat along."
BOB = "Bread is baked at dawn. The market fills by seven. Stall owners talk about the weather a lot."


class _NoConfig(msgspec.Struct):
    pass


class BatchedEmailGuard:
    """Finds e-mail addresses through a shared ``BatchingRunner``, and keeps every batch it ran."""

    kind: ClassVar[str] = "fake-pii"
    stages: ClassVar[frozenset[Stage]] = frozenset(Stage)
    config_type: ClassVar[type[msgspec.Struct]] = _NoConfig
    default_thresholds: ClassVar[Mapping[str, float]] = {"EMAIL_ADDRESS": 0.5}

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.runner: BatchingRunner[str, list[tuple[int, int]]] = BatchingRunner(
            "emails", self._predict, max_batch=8, max_wait_ms=5.0
        )

    def _predict(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        self.batches.append(list(texts))
        return [[(m.start(), m.end()) for m in _EMAIL.finditer(text)] for text in texts]

    @property
    def name(self) -> str:
        return "pii"

    @property
    def categories(self) -> Sequence[str]:
        return ["EMAIL_ADDRESS"]

    async def start(self) -> None:
        await self.runner.start()

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        found = await self.runner.run(texts)
        verdicts = []
        for spans in found:
            flagged = ["EMAIL_ADDRESS"] if spans else []
            marks = [Span(a, b, "EMAIL_ADDRESS", 1.0, "<EMAIL_ADDRESS>") for a, b in spans]
            verdicts.append(
                Verdict("pii", not flagged, {"EMAIL_ADDRESS": float(bool(spans))}, flagged, marks)
            )
        return verdicts

    async def close(self) -> None:
        await self.runner.close()


def _guard(guardrails: Guardrails, resolved: ResolvedPolicy) -> StreamGuard:
    return StreamGuard(guardrails, resolved, "chat")


async def _upstream(text: str) -> AsyncIterator[dict[str, Any]]:
    """The text a word a chunk, yielding to the loop between chunks so the two streams interleave."""
    words = text.split(" ")
    for i, word in enumerate(words):
        delta = {"content": word if i == 0 else " " + word}
        yield {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        await asyncio.sleep(0)
    yield {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


async def _read(guard: StreamGuard, text: str) -> str:
    out = []
    async for chunk in guard.run(_upstream(text)):
        for choice in chunk.get("choices") or ():
            out.append((choice.get("delta") or {}).get("content") or "")
    return "".join(out)


def _covered(text: str, judged: list[str]) -> set[int]:
    """The positions of ``text`` inside some judged item that is a piece of it."""
    covered: set[int] = set()
    for item in judged:
        start = text.find(item)
        if start >= 0:
            covered.update(range(start, start + len(item)))
    return covered


async def test_concurrent_streams_batched_together_never_leak_into_each_other() -> None:
    pii = BatchedEmailGuard()
    engine = GuardEngine({"pii": pii})
    await engine.start()
    try:
        windows = StreamPolicy(min_chars=10, max_chars=40, overlap_chars=12)
        policy = Policy(output=[Rule(guard="pii", action=Action.REDACT)], stream=windows)
        guardrails = Guardrails(engine, PolicyBook(default=policy), {"pii": GuardSpec(type="pii")})
        resolved = ResolvedPolicy("p", policy)
        alice, bob = await asyncio.gather(
            _read(_guard(guardrails, resolved), ALICE), _read(_guard(guardrails, resolved), BOB)
        )
    finally:
        await engine.close()

    # The windows really were judged together: some batch holds windows of both streams.
    judged = [text for batch in pii.batches for text in batch]
    assert any(any(t in ALICE for t in batch) and any(t in BOB for t in batch) for batch in pii.batches), (
        pii.batches
    )
    # Each stream got its own text back, its own redaction applied, and nothing of the other's.
    assert alice == ALICE.replace("ann.private@example.org", "<EMAIL_ADDRESS>")
    assert bob == BOB
    assert "ann.private" not in bob
    assert "harbour" not in bob
    # Every judged window is a piece of one stream only: no window mixes the two streams' text.
    assert all((t in ALICE) != (t in BOB) for t in judged), judged
    # Every character of each stream was judged.
    assert _covered(ALICE, judged) == set(range(len(ALICE)))
    assert _covered(BOB, judged) == set(range(len(BOB)))
