"""The grounding guard: each claim of an answer is checked against the request's sources and the
operator's citation database, and each citation against the source it names.

Per claim (a sentence of at least ``min_claim_words`` words that is not a question) the label is
``supported``, ``unsupported`` or ``contradicted``; a citation marker that names no source is a
``dangling_citation``, and one whose source does not support its sentence (while another source does)
a ``wrong_citation``.

Scorers:
- ``embedding`` (embedded default, no NLI weights needed): the nearest source sentence by
  all-MiniLM-L6-v2 embeddings, then lexical checks on it: numbers and names in the claim must appear in
  the source (a different number or name there means *contradicted*), negation must agree, and enough of
  the claim's words must be covered. It catches swapped figures and names and claims with nothing
  behind them; it cannot follow reasoning or paraphrase that shares neither words nor close meaning.
- ``nli``: an NLI cross-encoder (MNLI- or HHEM-style, by model id or path) judges the claim against its
  nearest source sentences.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import msgspec

from guards.base import GuardBase
from guards.devices import DevicePreference, Precision
from guards.grounding.citation_db import CitationIndex
from guards.grounding.text import (
    Sentence,
    citation_markers,
    coverage,
    entities,
    negated,
    numbers,
    sentences,
    without_markers,
)
from guards.models.nli_model import load_nli
from guards.models.sentence_embeddings import load_embedder
from guards.registry import GuardResources
from guards.runner import BatchingRunner
from guards.verdict import Evidence, JudgeContext, Source, Span, Stage, Verdict

SUPPORTED, UNSUPPORTED, CONTRADICTED = "supported", "unsupported", "contradicted"
DANGLING, WRONG = "dangling_citation", "wrong_citation"
CATEGORIES = ("unsupported", "contradicted", "citation")


class GroundingConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # embedding (the embedded default) or nli (needs nli_model).
    scorer: Literal["embedding", "nli"] = "embedding"
    embedding_model: str | None = None  # a sentence-transformers directory; default: all-MiniLM-L6-v2
    nli_model: str | None = None  # a model id or path, for scorer "nli"
    citation_db: str | None = None  # a directory built by `hhh grounding index`
    # auto (CUDA in fp16 when there is a GPU, else the CPU), cpu or cuda.
    device: DevicePreference = "auto"
    # auto, fp32, fp16 (CUDA only) or bf16.
    precision: Precision = "auto"
    # A claim is a sentence of at least this many words that is not a question.
    min_claim_words: int = 4
    # Embedding scorer: below min_similarity nothing in the sources is about the claim.
    min_similarity: float = 0.45
    # Embedding scorer: a claim whose share of words found in the source reaches this is supported.
    min_coverage: float = 0.6
    # Embedding scorer: a claim this similar to a source sentence is supported.
    support_similarity: float = 0.8
    # NLI scorer: the entailment a claim needs; contradiction above this marks it contradicted.
    min_entailment: float = 0.5
    # NLI scorer: the nearest source sentences each claim is checked against.
    nli_candidates: int = 3
    # What `action: redact` does to an unsupported sentence: mark it, or remove it.
    unsupported_style: Literal["mark", "remove"] = "mark"
    # What `mark` appends to an unsupported sentence.
    marker: str = " [unsupported]"
    # Texts one model call takes at most (the shared batching runner's micro-batch).
    max_batch: int = 64
    # How long the runner waits for more texts before it runs a partial batch.
    max_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if self.scorer == "nli" and not self.nli_model:
            raise ValueError("scorer 'nli' needs nli_model (a model id or a local path)")


class Claim(msgspec.Struct):
    sentence: Sentence
    text: str  # without citation markers
    markers: list[str]


class Unit(msgspec.Struct, frozen=True):
    """A source sentence (or the whole of a short source), the grain evidence is found at."""

    source: Source
    text: str


class Judgement(msgspec.Struct):
    label: str
    score: float
    unit: Unit | None


class GroundingGuard(GuardBase):
    kind: ClassVar[str] = "grounding"
    stages: ClassVar[frozenset[Stage]] = frozenset({Stage.OUTPUT})
    config_type: ClassVar[type[msgspec.Struct]] = GroundingConfig
    # Scores are shares of the answer's claims: by default one bad claim flags the answer.
    default_thresholds: ClassVar[Mapping[str, float]] = dict.fromkeys(CATEGORIES, 0.01)

    def __init__(self, name: str, config: GroundingConfig, resources: GuardResources) -> None:
        super().__init__(name)
        self.config = config
        self._resources = resources
        self._embedder: BatchingRunner[str, Any] | None = None
        self._nli: BatchingRunner[tuple[str, str], dict[str, float]] | None = None
        self._database: CitationIndex | None = None

    @property
    def categories(self) -> Sequence[str]:
        return CATEGORIES

    async def start(self) -> None:
        config, runners = self.config, self._resources.runners
        model = config.embedding_model or "minilm"
        key = f"embeddings:{model}:{config.device}:{config.precision}"

        def embedder() -> BatchingRunner[str, Any]:
            loaded = load_embedder(config.embedding_model, config.device, config.precision)
            return BatchingRunner(
                key, lambda texts: list(loaded.embed(texts)), max_batch=config.max_batch,
                max_wait_ms=config.max_wait_ms, metrics=runners.metrics, warmup=["warm-up sentence"],
            )  # fmt: skip

        self._embedder = await runners.get(key, embedder)
        if config.scorer == "nli" and config.nli_model:
            nli_model = config.nli_model
            nli_key = f"nli:{nli_model}:{config.device}:{config.precision}"

            def nli() -> BatchingRunner[tuple[str, str], dict[str, float]]:
                loaded = load_nli(nli_model, config.device, config.precision)
                return BatchingRunner(
                    nli_key, loaded.predict, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms,
                    metrics=runners.metrics, warmup=[("The sky is blue.", "The sky is blue.")],
                )  # fmt: skip

            self._nli = await runners.get(nli_key, nli)
        if config.citation_db:
            from pathlib import Path

            self._database = CitationIndex.load(Path(config.citation_db))

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        started = time.perf_counter()
        sources = list(context.sources) if context else []
        results = [await self._judge_one(text, sources, context) for text in texts]
        latency = (time.perf_counter() - started) * 1000
        return [
            self._verdict(text, claims, judged, thresholds, latency)
            for text, (claims, judged) in zip(texts, results, strict=True)
        ]

    async def _judge_one(
        self, text: str, sources: list[Source], context: JudgeContext | None
    ) -> tuple[list[Claim], list[Judgement]]:
        focus = context.focus_start if context is not None else 0
        claims = [claim for claim in self._claims(text) if claim.sentence.start >= focus]
        if not claims or (not sources and self._database is None):
            return [], []
        assert self._embedder is not None, "GroundingGuard.start() was not awaited"
        units, unit_vectors = await self._units(sources, context)
        claim_vectors = await self._embedder.run([c.text for c in claims])
        database_hits = self._database.search(_stack(claim_vectors)) if self._database is not None else None
        judged = []
        for index, (claim, vector) in enumerate(zip(claims, claim_vectors, strict=True)):
            candidates = _nearest(units, unit_vectors, vector, self.config.nli_candidates)
            if database_hits and database_hits[index]:
                passage, similarity = database_hits[index][0]
                candidates.append((Unit(passage, passage.text), similarity))
                candidates.sort(key=lambda pair: -pair[1])
            judgement = await self._judge_claim(claim, candidates)
            judged.append(await self._check_citations(claim, judgement, sources, units, unit_vectors, vector))
        return claims, judged

    def _claims(self, text: str) -> list[Claim]:
        claims = []
        for sentence in sentences(text):
            clean = without_markers(sentence.text)
            if len(clean.split()) >= self.config.min_claim_words and not clean.rstrip().endswith("?"):
                claims.append(Claim(sentence, clean, citation_markers(sentence.text)))
        return claims

    async def _units(
        self, sources: list[Source], context: JudgeContext | None
    ) -> tuple[list[Unit], list[Any]]:
        cache = context.cache if context is not None else {}
        cached = cache.get("grounding.units")
        if isinstance(cached, tuple):
            return cached[0], cached[1]
        units = [Unit(source, s.text) for source in sources for s in sentences(source.text)]
        assert self._embedder is not None
        vectors: list[Any] = await self._embedder.run([u.text for u in units]) if units else []
        cache["grounding.units"] = (units, vectors)
        return units, vectors

    async def _judge_claim(self, claim: Claim, candidates: list[tuple[Unit, float]]) -> Judgement:
        if not candidates:
            return Judgement(UNSUPPORTED, 0.0, None)
        if self._nli is not None:
            return await self._judge_with_nli(claim, candidates)
        unit, similarity = candidates[0]
        return Judgement(self._lexical_label(claim.text, unit, similarity), similarity, unit)

    def _lexical_label(self, claim: str, unit: Unit, similarity: float) -> str:
        config = self.config
        if similarity < config.min_similarity:
            return UNSUPPORTED
        source_text = unit.source.text
        missing_numbers = numbers(claim) - numbers(source_text)
        if missing_numbers:
            return CONTRADICTED if numbers(unit.text) else UNSUPPORTED
        lowered = source_text.lower()
        missing_names = {name for name in entities(claim) if name not in lowered}
        if missing_names:
            return CONTRADICTED if entities(unit.text) - entities(claim) else UNSUPPORTED
        if negated(claim) != negated(unit.text):
            return CONTRADICTED
        if similarity >= config.support_similarity or coverage(claim, unit.text) >= config.min_coverage:
            return SUPPORTED
        return UNSUPPORTED

    async def _judge_with_nli(self, claim: Claim, candidates: list[tuple[Unit, float]]) -> Judgement:
        assert self._nli is not None
        top = candidates[: self.config.nli_candidates]
        scores = await self._nli.run([(unit.text, claim.text) for unit, _ in top])
        best = max(range(len(top)), key=lambda i: scores[i]["entailment"])
        if scores[best]["entailment"] >= self.config.min_entailment:
            return Judgement(SUPPORTED, scores[best]["entailment"], top[best][0])
        worst = max(range(len(top)), key=lambda i: scores[i]["contradiction"])
        if scores[worst]["contradiction"] >= self.config.min_entailment:
            return Judgement(CONTRADICTED, scores[worst]["contradiction"], top[worst][0])
        return Judgement(UNSUPPORTED, scores[best]["entailment"], top[best][0])

    async def _check_citations(
        self,
        claim: Claim,
        judgement: Judgement,
        sources: list[Source],
        units: list[Unit],
        unit_vectors: list[Any],
        vector: Any,
    ) -> Judgement:
        if not claim.markers:
            return judgement
        cited = [_resolve(marker, sources) for marker in claim.markers]
        if any(source is None for source in cited):
            return Judgement(DANGLING, judgement.score, judgement.unit)
        cited_ids = {source.id for source in cited if source is not None}
        own = [(u, v) for u, v in zip(units, unit_vectors, strict=True) if u.source.id in cited_ids]
        candidates = _nearest([u for u, _ in own], [v for _, v in own], vector, self.config.nli_candidates)
        by_cited = await self._judge_claim(claim, candidates)
        if by_cited.label != SUPPORTED and judgement.label == SUPPORTED:
            return Judgement(WRONG, by_cited.score, judgement.unit)
        return by_cited if judgement.label == SUPPORTED else judgement

    def _verdict(
        self,
        text: str,
        claims: list[Claim],
        judged: list[Judgement],
        thresholds: Mapping[str, float],
        latency: float,
    ) -> Verdict:
        if not claims:
            return Verdict(self._name, True, {"groundedness": 1.0}, latency_ms=latency)
        total = len(claims)
        bad = [j.label != SUPPORTED for j in judged]
        scores = {
            "groundedness": round(1 - sum(bad) / total, 4),
            "unsupported": round(sum(bad) / total, 4),
            "contradicted": round(sum(j.label == CONTRADICTED for j in judged) / total, 4),
            "citation": round(sum(j.label in (DANGLING, WRONG) for j in judged) / total, 4),
        }
        flagged = [c for c in CATEGORIES if scores[c] >= thresholds.get(c, 0.01) and scores[c] > 0]
        spans, evidence = [], []
        for claim, judgement in zip(claims, judged, strict=True):
            sentence = claim.sentence
            evidence.append(
                Evidence(
                    kind=judgement.label,
                    detail=(judgement.unit.text[:300] if judgement.unit else "no related source"),
                    source=judgement.unit.source.id if judgement.unit else None,
                    start=sentence.start,
                    end=sentence.end,
                    score=round(judgement.score, 4),
                )
            )
            if judgement.label != SUPPORTED:
                label = "citation" if judgement.label in (DANGLING, WRONG) else judgement.label
                replacement = (
                    "" if self.config.unsupported_style == "remove" else sentence.text + self.config.marker
                )
                spans.append(Span(sentence.start, sentence.end, label, judgement.score, replacement))
        return Verdict(self._name, not flagged, scores, flagged, spans, evidence=evidence, latency_ms=latency)


def _stack(vectors: list[Any]) -> Any:
    import numpy as np

    return np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)


def _nearest(units: list[Unit], vectors: list[Any], query: Any, k: int) -> list[tuple[Unit, float]]:
    if not units:
        return []
    scores = _stack(vectors) @ query
    order = sorted(range(len(units)), key=lambda i: -float(scores[i]))[:k]
    return [(units[i], float(scores[i])) for i in order]


def _resolve(marker: str, sources: list[Source]) -> Source | None:
    """``[2]`` is the second source; ``[doc-id]`` an id; a URL a source's URL."""
    if marker.isdigit():
        index = int(marker) - 1
        return sources[index] if 0 <= index < len(sources) else None
    for source in sources:
        if marker == source.id or (source.url and marker.rstrip("/") == source.url.rstrip("/")):
            return source
    return None
