"""The reward guard: a reward model's score for every answer, in the report (``scores: {"reward": r}``)
and in the ``hhh_answer_reward`` histogram, so operators see answer quality next to safety.

It only grades (``guards.policy.Grade``): with a floor (``thresholds: {reward: X}``) an answer scoring
*below* X is flagged, or annotated; its rules are output rules that fail open, and a request may raise
the floor, never lower it. Without a floor nothing is flagged: rewards have no common scale, so there
is no default.

It reads each answer as sent (the raw view: what the exports it was trained on hold) after the request's
prompt (``JudgeContext.prompt``), exactly as training read them (``guards.models.reward_format``).

Streams: the guard scores the text it is given; the stream guard gives grading rules each choice's whole
content once it has ended, never its windows (``gateway.guarded.stream_guard``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import ClassVar

import msgspec

from guards.base import GuardBase
from guards.models.reward_model import RewardModelConfig, RewardScorer, reward_scorer
from guards.normalise import TextView
from guards.policy import Grade
from guards.registry import GuardResources
from guards.verdict import JudgeContext, Stage, Verdict

REWARD = "reward"  # the one category, and the score's name in the report


class RewardGuard(GuardBase):
    kind: ClassVar[str] = "reward"
    stages: ClassVar[frozenset[Stage]] = frozenset({Stage.OUTPUT})
    view: ClassVar[TextView] = TextView.RAW
    config_type: ClassVar[type[msgspec.Struct]] = RewardModelConfig
    default_thresholds: ClassVar[Mapping[str, float]] = {}  # no floor unless a rule sets one

    def __init__(self, name: str, config: RewardModelConfig, resources: GuardResources) -> None:
        super().__init__(name)
        self.config = config
        self._resources = resources
        self._scorer: RewardScorer | None = None

    @property
    def categories(self) -> Sequence[str]:
        return (Grade(REWARD),)

    async def start(self) -> None:
        self._scorer = await reward_scorer(self.config, self._resources.runners, f"guards.{self.name}.config")

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        if self._scorer is None:
            raise RuntimeError(f"guard {self.name} is not started")
        context = context or JudgeContext()
        started = time.perf_counter()
        rewards = await self._scorer.score([(context.prompt, text) for text in texts])
        latency = (time.perf_counter() - started) * 1000
        floor = thresholds.get(REWARD)
        metrics = self._resources.metrics
        verdicts = []
        for reward in rewards:
            if metrics is not None:
                metrics.observe_reward(context.model, self.config.model, reward)
            low = floor is not None and reward < floor
            verdicts.append(
                Verdict(
                    guard=self.name,
                    allowed=not low,
                    scores={REWARD: reward},
                    categories=[REWARD] if low else [],
                    latency_ms=latency,
                )
            )
        return verdicts
