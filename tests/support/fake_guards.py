"""Deterministic guards for fast unit tests of the guard paths (the real ones have their own tests)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

import msgspec

from guards.pii import DEFAULT_ENTITIES
from guards.verdict import JudgeContext, Span, Stage, Verdict


class _NoConfig(msgspec.Struct):
    pass


class WordGuard:
    """Flags texts containing a trigger word, as the category ``toxicity``; can be made slow or broken."""

    kind: ClassVar[str] = "fake-words"
    stages: ClassVar[frozenset[Stage]] = frozenset(Stage)
    config_type: ClassVar[type[msgspec.Struct]] = _NoConfig
    default_thresholds: ClassVar[Mapping[str, float]] = {"toxicity": 0.5}

    def __init__(self, name: str = "toxicity", trigger: str = "BADWORD") -> None:
        self._name = name
        self.trigger = trigger
        self.calls: list[list[str]] = []
        self.contexts: list[JudgeContext | None] = []  # each call's context
        self.delay_s = 0.0
        self.fail = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def categories(self) -> Sequence[str]:
        return ["toxicity"]

    async def start(self) -> None:
        pass

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        self.calls.append(list(texts))
        self.contexts.append(context)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("model crashed")
        verdicts = []
        for text in texts:
            score = 0.99 if self.trigger in text else 0.01
            flagged = ["toxicity"] if score >= thresholds.get("toxicity", 0.5) else []
            verdicts.append(Verdict(self._name, not flagged, {"toxicity": score}, flagged))
        return verdicts

    async def close(self) -> None:
        pass


_EMAIL = re.compile(r"[\w.]+@[\w.]+\.\w+")


class EmailGuard:
    """Finds e-mail addresses as spans with a ``<EMAIL_ADDRESS>`` replacement (a PII stand-in)."""

    kind: ClassVar[str] = "fake-pii"
    stages: ClassVar[frozenset[Stage]] = frozenset(Stage)
    config_type: ClassVar[type[msgspec.Struct]] = _NoConfig
    default_thresholds: ClassVar[Mapping[str, float]] = {"EMAIL_ADDRESS": 0.5}

    def __init__(self, name: str = "pii") -> None:
        self._name = name
        self.calls: list[list[str]] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def categories(self) -> Sequence[str]:
        return ["EMAIL_ADDRESS"]

    async def start(self) -> None:
        pass

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        self.calls.append(list(texts))
        verdicts = []
        for text in texts:
            spans = [
                Span(m.start(), m.end(), "EMAIL_ADDRESS", 1.0, "<EMAIL_ADDRESS>")
                for m in _EMAIL.finditer(text)
            ]
            flagged = ["EMAIL_ADDRESS"] if spans else []
            verdicts.append(
                Verdict(self._name, not flagged, {"EMAIL_ADDRESS": 1.0 if spans else 0.0}, flagged, spans)
            )
        return verdicts

    async def close(self) -> None:
        pass


class NameAndEmailGuard(EmailGuard):
    """``EmailGuard`` that also finds the given names, as ``PERSON``; its categories are the real PII
    guard's (it finds only those two), for the rules that count only some of them."""

    kind: ClassVar[str] = "fake-pii-names"
    default_thresholds: ClassVar[Mapping[str, float]] = {"EMAIL_ADDRESS": 0.5, "PERSON": 0.5}

    def __init__(self, name: str = "pii", names: Sequence[str] = ("William Shakespeare", "Maria Lopez")):
        super().__init__(name)
        self._names = re.compile("|".join(re.escape(n) for n in names))

    @property
    def categories(self) -> Sequence[str]:
        return list(DEFAULT_ENTITIES)

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        verdicts = await super().judge(texts, thresholds, context)
        for text, verdict in zip(texts, verdicts, strict=True):
            names = [Span(m.start(), m.end(), "PERSON", 0.85, "<PERSON>") for m in self._names.finditer(text)]
            if names:
                verdict.spans = sorted(verdict.spans + names, key=lambda span: span.start)
                verdict.categories = sorted({*verdict.categories, "PERSON"})
                verdict.scores["PERSON"] = 0.85
                verdict.allowed = False
        return verdicts
