"""The toxicity guard: detoxify models, with the classic classifier as the embedded default and as a
fast first tier.

Tiers, as configured:
- classic only (the default, no download): one ``toxicity`` score per text;
- detoxify only (``cascade.enabled: false``): detoxify's categories for every text;
- cascade: the classic tier scores every text, and detoxify runs only on the texts the classic tier
  is unsure about (``clear_below`` <= score < ``flag_above``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from guards.base import GuardBase
from guards.models.classic_toxicity import classic_predict
from guards.models.detoxify_model import DetoxifyConfig, load_detoxify
from guards.normalise import TextView
from guards.registry import GuardResources
from guards.runner import BatchingRunner
from guards.verdict import Evidence, JudgeContext, Stage, Verdict

DETOXIFY_CATEGORIES = (
    "toxicity",
    "severe_toxicity",
    "obscene",
    "threat",
    "insult",
    "identity_attack",
    "sexual_explicit",
)


class CascadeConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which classic scores are sure enough to skip detoxify. The classic tier is confidently wrong on
    veiled hostility (many toxic texts score under 0.15 in our labelled set), so by default only the
    clearly toxic skip the model; raise ``clear_below`` to trade recall for throughput."""

    enabled: bool = True
    clear_below: float = 0.0
    flag_above: float = 0.95


class ToxicityConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    classic: bool = True
    detoxify: DetoxifyConfig | None = None
    cascade: CascadeConfig = msgspec.field(default_factory=CascadeConfig)
    max_batch: int = 64
    max_wait_ms: float = 1.0

    def __post_init__(self) -> None:
        if not self.classic and self.detoxify is None:
            raise ValueError("toxicity: enable the classic tier or configure detoxify (or both)")


class ToxicityGuard(GuardBase):
    kind: ClassVar[str] = "toxicity"
    stages: ClassVar[frozenset[Stage]] = frozenset(Stage)
    # Classifiers judge meaning: they read the text with obfuscation undone (``guards.normalise``).
    view: ClassVar[TextView] = TextView.DEOBFUSCATED
    config_type: ClassVar[type[msgspec.Struct]] = ToxicityConfig
    default_thresholds: ClassVar[Mapping[str, float]] = dict.fromkeys(DETOXIFY_CATEGORIES, 0.5)

    def __init__(self, name: str, config: ToxicityConfig, resources: GuardResources) -> None:
        super().__init__(name)
        self.config = config
        self._resources = resources
        self._classic: BatchingRunner[str, float] | None = None
        self._detoxify: BatchingRunner[str, dict[str, float]] | None = None

    @property
    def categories(self) -> Sequence[str]:
        return DETOXIFY_CATEGORIES if self.config.detoxify is not None else ("toxicity",)

    async def start(self) -> None:
        runners = self._resources.runners
        if self.config.classic:
            self._classic = await runners.get(
                "classic-toxicity",
                lambda: BatchingRunner(
                    "classic-toxicity",
                    classic_predict,
                    max_batch=self.config.max_batch,
                    max_wait_ms=self.config.max_wait_ms,
                    metrics=runners.metrics,
                    warmup=["warm-up text"],
                ),
            )
        detoxify = self.config.detoxify
        if detoxify is not None:
            key = f"detoxify:{detoxify.checkpoint or detoxify.model}:{detoxify.device}:{detoxify.precision}"
            self._detoxify = await runners.get(key, lambda: self._detoxify_runner(detoxify, key))

    def _detoxify_runner(self, config: DetoxifyConfig, key: str) -> BatchingRunner[str, dict[str, float]]:
        loaded = load_detoxify(config)
        return BatchingRunner(
            f"{key}@{loaded.placement.key}",
            loaded.predict,
            max_batch=config.max_batch,
            max_wait_ms=config.max_wait_ms,
            metrics=self._resources.runners.metrics,
            warmup=["warm-up text"] * min(4, config.max_batch),
        )

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        started = time.perf_counter()
        scores, tiers = await self._score(texts)
        latency = (time.perf_counter() - started) * 1000
        verdicts = []
        for text_scores, tier in zip(scores, tiers, strict=True):
            # Only toxicity categories flag; the unbiased model's identity-mention scores are context.
            flagged = [c for c, s in text_scores.items() if c in thresholds and s >= thresholds[c]]
            verdicts.append(
                Verdict(
                    guard=self._name,
                    allowed=not flagged,
                    scores=text_scores,
                    categories=flagged,
                    evidence=[Evidence(kind="tier", detail=tier)],
                    latency_ms=latency,
                )
            )
        return verdicts

    async def _score(self, texts: Sequence[str]) -> tuple[list[dict[str, float]], list[str]]:
        cascade = self.config.cascade
        if self._classic is None or (self._detoxify is not None and not cascade.enabled):
            assert self._detoxify is not None
            return await self._detoxify.run(texts), ["detoxify"] * len(texts)
        classic = await self._classic.run(texts)
        scores: list[dict[str, Any]] = [{"toxicity": score} for score in classic]
        tiers = ["classic"] * len(texts)
        if self._detoxify is None:
            return scores, tiers
        unsure = [i for i, score in enumerate(classic) if cascade.clear_below <= score < cascade.flag_above]
        if unsure:
            refined = await self._detoxify.run([texts[i] for i in unsure])
            for index, detoxify_scores in zip(unsure, refined, strict=True):
                scores[index] = detoxify_scores
                tiers[index] = "detoxify"
        return scores, tiers
