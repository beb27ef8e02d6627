"""The intellectual-property guard.

Output: spans of the answer that reproduce a protected document (verbatim, or with whitespace, case or
punctuation changed) over ``min_match_chars``, each reported with its source, owner, licence and
length; and licence headers or SPDX identifiers, checked against an allow or deny list.
Input: requests that name a protected title and ask for its text (``protected_titles``).

Categories: ``copy`` (share of the answer copied), ``licence`` (1 when a denied licence appears),
``request`` (1 when the input asks to reproduce a protected title).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import msgspec

from guards.base import GuardBase
from guards.ip.corpus import read_corpus
from guards.ip.index import FingerprintIndex
from guards.ip.licences import licence_mentions, matches
from guards.ip.matching import find_copies
from guards.registry import GuardResources
from guards.verdict import Evidence, JudgeContext, Span, Stage, Verdict

CATEGORIES = ("copy", "licence", "request")
SAMPLE_CORPUS = Path(__file__).resolve().parent / "sample" / "corpus.jsonl"
DEFAULT_CUES = (
    "lyrics", "full text", "verbatim", "word for word", "entire text", "whole text", "complete text",
    "reproduce", "copy out", "print out", "recite", "the whole chapter", "every line",
)  # fmt: skip


class IpConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # A directory built by `hhh ip index`, or redis://host:port/db?name=NAME for many replicas;
    # default: the sample corpus shipped with the gateway
    # (guards/ip/sample: three licence texts and a GPL-licensed code file), indexed at start.
    index: str | None = None
    # The shortest copy reported, in normalised characters.
    min_match_chars: int = 60
    deny_licences: list[str] = []  # e.g. [GPL, AGPL-3.0]: families match by prefix
    allow_licences: list[str] = []  # when set, any other licence found is flagged
    # Titles whose text a request may not ask for (with a reproduction cue): flagged on input.
    protected_titles: list[str] = []
    # Words that, beside a protected title, ask for its text.
    reproduction_cues: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_CUES))
    # What `annotate` appends; {sources} names each source, owner, licence and URL.
    attribution: str = "\n\nSource: this answer reproduces parts of {sources}."


class IpGuard(GuardBase):
    kind: ClassVar[str] = "ip"
    stages: ClassVar[frozenset[Stage]] = frozenset(Stage)
    config_type: ClassVar[type[msgspec.Struct]] = IpConfig
    default_thresholds: ClassVar[Mapping[str, float]] = {"copy": 0.0001, "licence": 0.5, "request": 0.5}

    def __init__(self, name: str, config: IpConfig, resources: GuardResources) -> None:
        super().__init__(name)
        self.config = config
        self.index = FingerprintIndex()
        self._titles = _alternation(config.protected_titles)
        self._cues = _alternation(config.reproduction_cues)

    @property
    def categories(self) -> Sequence[str]:
        return CATEGORIES

    @property
    def min_stream_overlap(self) -> int:
        """A stream window must carry this much of the previous one for a copy across the cut to show."""
        return self.config.min_match_chars

    async def start(self) -> None:
        location = self.config.index
        if location and location.startswith(("redis://", "rediss://")):
            self.index = await _load_from_redis(location)
        elif location:
            self.index = FingerprintIndex.load(Path(location))
        else:
            self.index = FingerprintIndex()
            self.index.add(read_corpus(SAMPLE_CORPUS))

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        started = time.perf_counter()
        stage = context.stage if context is not None else Stage.OUTPUT
        focus = context.focus_start if context is not None else 0
        verdicts = []
        for text in texts:
            verdict = self._judge_request(text) if stage is Stage.INPUT else self._judge_answer(text, focus)
            verdict.latency_ms = (time.perf_counter() - started) * 1000
            flagged = [c for c in CATEGORIES if verdict.scores.get(c, 0.0) >= thresholds.get(c, 1.0) > 0]
            verdict.categories = [c for c in flagged if verdict.scores[c] > 0]
            verdict.allowed = not verdict.categories
            verdicts.append(verdict)
        return verdicts

    def _judge_answer(self, text: str, focus: int) -> Verdict:
        spans: list[Span] = []
        evidence: list[Evidence] = []
        copied = 0
        sources = []
        for copy in find_copies(text, self.index, self.config.min_match_chars):
            if copy.end <= focus:
                continue  # seen whole in the previous stream window
            document = self.index.documents[copy.document]
            copied += copy.end - copy.start
            label = f"{document.title or document.id}" + (f" by {document.owner}" if document.owner else "")
            detail = f"{label}; licence {document.licence or 'unknown'}; {copy.words} words"
            sources.append(f"{label} ({document.licence}, {document.url})" if document.url else label)
            spans.append(Span(copy.start, copy.end, "copy", 1.0, f"[removed: text reproduced from {label}]"))
            evidence.append(Evidence("copy", detail, document.id, copy.start, copy.end, float(copy.words)))
        denied = 0.0
        for mention in licence_mentions(text):
            if mention.end <= focus:
                continue
            bad = any(matches(mention.licence, d) for d in self.config.deny_licences) or (
                bool(self.config.allow_licences)
                and not any(matches(mention.licence, a) for a in self.config.allow_licences)
            )
            denied = max(denied, 1.0 if bad else 0.0)
            kind = "denied_licence" if bad else "licence"
            evidence.append(
                Evidence(kind, f"{mention.licence} ({mention.how})", None, mention.start, mention.end)
            )
            if bad:
                spans.append(Span(mention.start, mention.end, "licence", 1.0, None))
        scores = {"copy": round(copied / max(1, len(text)), 4), "licence": denied}
        annotation = (
            self.config.attribution.format(sources="; ".join(dict.fromkeys(sources))) if sources else None
        )
        return Verdict(self._name, True, scores, [], spans, evidence=evidence, annotation=annotation)

    def _judge_request(self, text: str) -> Verdict:
        title = self._titles.search(text) if self._titles else None
        cue = self._cues.search(text) if self._cues and title else None
        if title is None or cue is None:
            return Verdict(self._name, True, {"request": 0.0})
        evidence = [Evidence("protected_title", title.group(0), None, title.start(), title.end())]
        return Verdict(
            self._name,
            True,
            {"request": 1.0},
            [],
            [Span(title.start(), title.end(), "request")],
            evidence=evidence,
        )


async def _load_from_redis(location: str) -> FingerprintIndex:
    import redis.asyncio

    from guards.ip.redis_store import load_from_redis, split_location

    url, name = split_location(location)
    client = redis.asyncio.from_url(url)
    try:
        index = await load_from_redis(client, name)
    finally:
        await client.aclose()
    if index is None:
        raise ValueError(
            f"no IP index named {name!r} in {url} (build one with `hhh ip index --out {location}`)"
        )
    return index


def _alternation(phrases: Sequence[str]) -> re.Pattern[str] | None:
    """All phrases in one pattern (longest first), matched case-insensitively on word boundaries."""
    if not phrases:
        return None
    ordered = sorted({p.strip() for p in phrases if p.strip()}, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(re.escape(p) for p in ordered) + r")\b", re.IGNORECASE)
