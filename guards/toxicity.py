"""The toxicity guard: three tiers, each as configured.

- ``bilstm`` (the embedded default, no download): toxic-comment-classifier's Jigsaw BiLSTM, ported to
  PyTorch (``guards.models.bilstm_toxicity``), six categories, about 2 ms a text on one CPU thread
  (``tests/benchmarks/toxicity_models.py``);
- ``detoxify``: a detoxify checkpoint, the strong model, for production (GPU when present). When it is
  configured it is the model tier, in place of the BiLSTM;
- ``classic``: alt-profanity-check's TF-IDF tier (about 10 ms for one text, under 1 ms in batches), in
  front of the model tier as a cascade: texts it scores at or above ``cascade.flag_above`` are flagged
  without the model, texts below ``cascade.clear_below`` pass without it, the rest go to the model.

Why this default (measured on the suite's 240 labelled texts, docs/guards/toxicity.md, "Measured
quality"): the BiLSTM alone beats the classic tier on recall at the same precision; the classic tier in
front of it only loses (its sure flags include "the etymology of the word 'fuck'", and its sure clears
include veiled hostility), and it saves nothing, because the BiLSTM costs what it costs. So ``classic``
is on by default only in front of detoxify, where skipping the model saves real time. ``classic: true``
with ``bilstm: null`` is the old classic-only guard.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from guards.base import GuardBase
from guards.models.bilstm_toxicity import CATEGORIES as BILSTM_CATEGORIES
from guards.models.bilstm_toxicity import BiLstmConfig, load_bilstm
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
    """Which classic scores are sure enough to skip the model tier. The classic tier is confidently
    wrong on veiled hostility (many toxic texts score under 0.15 in our labelled set), so by default only
    the clearly toxic skip the model; raise ``clear_below`` to trade recall for throughput."""

    # Let the classic tier decide the texts it is sure about.
    enabled: bool = True
    # Texts the classic tier scores below this pass without the model tier.
    clear_below: float = 0.0
    # Texts the classic tier scores at or above this are flagged without the model tier.
    flag_above: float = 0.95

    def __post_init__(self) -> None:
        if not 0.0 <= self.clear_below <= self.flag_above <= 1.0:
            raise ValueError("clear_below: needs 0 <= clear_below <= flag_above <= 1")


class ToxicityConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # The classic alt-profanity-check tier. None: on in front of detoxify (a cheap cascade tier), off in
    # front of the BiLSTM, where it only costs precision (see the module).
    classic: bool | None = None
    # The embedded BiLSTM (the default model tier); null: none.
    bilstm: BiLstmConfig | None = msgspec.field(default_factory=BiLstmConfig)
    # A detoxify model; when set, it replaces the BiLSTM as the model tier.
    detoxify: DetoxifyConfig | None = None
    # Which classic scores skip the model tier.
    cascade: CascadeConfig = msgspec.field(default_factory=CascadeConfig)
    # The classic tier's runner: texts one call takes at most (the shared batching runner's micro-batch).
    max_batch: int = 64
    # The classic tier's runner: how long it waits for more texts before it runs a partial batch.
    max_wait_ms: float = 1.0

    def __post_init__(self) -> None:
        if not self.classic and self.detoxify is None and self.bilstm is None:
            raise ValueError("bilstm: the toxicity guard needs a tier: set classic, bilstm or detoxify")

    @property
    def model_tier(self) -> str | None:
        """The model that judges what the classic tier does not decide: detoxify, else the BiLSTM."""
        if self.detoxify is not None:
            return "detoxify"
        return "bilstm" if self.bilstm is not None else None

    @property
    def uses_classic(self) -> bool:
        return self.classic if self.classic is not None else self.model_tier == "detoxify"


class ToxicityGuard(GuardBase):
    context_free: ClassVar[bool] = True  # judged on the text alone: input verdicts are cached
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
        self._model: BatchingRunner[str, dict[str, float]] | None = None

    @property
    def categories(self) -> Sequence[str]:
        tier = self.config.model_tier
        if tier == "detoxify":
            return DETOXIFY_CATEGORIES
        return BILSTM_CATEGORIES if tier == "bilstm" else ("toxicity",)

    async def start(self) -> None:
        runners = self._resources.runners
        if self.config.uses_classic:
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
        detoxify, bilstm = self.config.detoxify, self.config.bilstm
        if detoxify is not None:
            key = f"detoxify:{detoxify.checkpoint or detoxify.model}:{detoxify.device}:{detoxify.precision}"
            self._model = await runners.get(key, lambda: self._detoxify_runner(detoxify, key))
        elif bilstm is not None:
            key = f"bilstm-toxicity:{bilstm.model_dir or 'package'}:{bilstm.device}"
            self._model = await runners.get(key, lambda: self._bilstm_runner(bilstm, key))

    def _bilstm_runner(self, config: BiLstmConfig, key: str) -> BatchingRunner[str, dict[str, float]]:
        return BatchingRunner(
            key,
            load_bilstm(config),
            max_batch=config.max_batch,
            max_wait_ms=config.max_wait_ms,
            metrics=self._resources.runners.metrics,
            warmup=["warm-up text"],
        )

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
        scores, tiers = await self._score(texts, context.patience_s if context is not None else 0.0)
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

    async def _score(
        self, texts: Sequence[str], patience_s: float
    ) -> tuple[list[dict[str, float]], list[str]]:
        cascade, tier = self.config.cascade, self.config.model_tier or "classic"
        if self._classic is None or (self._model is not None and not cascade.enabled):
            assert self._model is not None
            return await self._model.run(texts, patience_s), [tier] * len(texts)
        classic = await self._classic.run(texts)  # cheap: never held for company
        scores: list[dict[str, Any]] = [{"toxicity": score} for score in classic]
        tiers = ["classic"] * len(texts)
        if self._model is None:
            return scores, tiers
        unsure = [i for i, score in enumerate(classic) if cascade.clear_below <= score < cascade.flag_above]
        if unsure:
            refined = await self._model.run([texts[i] for i in unsure], patience_s)
            for index, model_scores in zip(unsure, refined, strict=True):
                scores[index] = model_scores
                tiers[index] = tier
        return scores, tiers
