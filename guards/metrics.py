"""Guard and model-runner metrics, registered in the registry the app owns."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Histogram, Summary

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128)
# Rewards are logits: either sign, finer near 0 where a reward model separates most pairs.
_REWARD = (-8.0, -4.0, -2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# Served models get a label value each; a guard is told the model by its caller, so past this many
# distinct names the rest share "other" and no caller can grow the series without bound.
MAX_MODEL_LABELS = 64
OTHER = "other"


class GuardMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_size = Histogram(
            "hhh_runner_batch_size", "Texts per model call.", ["runner"], buckets=_BATCH, registry=registry
        )
        self.queue_wait = Histogram(
            "hhh_runner_queue_wait_seconds",
            "Time a call waited for its batch to start.",
            ["runner"],
            buckets=_FAST,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "hhh_runner_batch_seconds",
            "Time one model call took.",
            ["runner"],
            buckets=_FAST,
            registry=registry,
        )
        self.child_restarts = Counter(
            "hhh_runner_child_restarts",
            "Child processes of a runner started again after one died or was killed (guards.child_process).",
            ["runner"],
            registry=registry,
        )
        self.guard_latency = Histogram(
            "hhh_guard_latency_seconds",
            "Time a guard took to judge one batch, by stage.",
            ["guard", "stage"],
            buckets=_FAST,
            registry=registry,
        )
        self.verdict_cache = Counter(
            "hhh_verdict_cache",
            "Input verdicts found in (hit) or missing from (miss) the per-tenant cache, by guard.",
            ["guard", "outcome"],
            registry=registry,
        )
        self.decisions = Counter(
            "hhh_guard_decisions",
            "What guards decided, per text: pass, flag, annotate, redact, block, error.",
            ["guard", "stage", "decision"],
            registry=registry,
        )
        self.blocks = Counter(
            "hhh_guard_blocks",
            "Texts blocked, by guard and category.",
            ["guard", "stage", "category"],
            registry=registry,
        )
        self.errors = Counter(
            "hhh_guard_errors",
            "Guard failures and time-outs, by fail mode applied.",
            ["guard", "stage", "kind", "fail_mode"],
            registry=registry,
        )
        self.answer_reward = Histogram(
            "hhh_answer_reward",
            "Rewards of answers (reward guards), by the model that answered and the reward model.",
            ["model", "reward_model"],
            buckets=_REWARD,
            registry=registry,
        )
        # A histogram with buckets below zero exposes no _sum (OpenMetrics), so the mean reward per model
        # (sum / count) comes from this summary.
        self.answer_reward_totals = Summary(
            "hhh_answer_rewards",
            "Count and sum of answers' rewards, for the mean reward per model and reward model.",
            ["model", "reward_model"],
            registry=registry,
        )
        # Label values are the guard's configured name and a fixed set of outcomes (ok, malformed,
        # timeout, connect, http_status, bad_response): nothing a client sends becomes a label.
        self.safety_llm_calls = Counter(
            "hhh_safety_llm_calls",
            "Calls of safety_llm guards to their model server, by outcome.",
            ["guard", "outcome"],
            registry=registry,
        )
        self.safety_llm_seconds = Histogram(
            "hhh_safety_llm_call_seconds",
            "Time one safety_llm call took, answered or not.",
            ["guard"],
            buckets=(*_FAST, 5.0, 10.0),
            registry=registry,
        )
        self._reward_model_labels: set[str] = set()

    def observe_reward(self, model: str, reward_model: str, reward: float) -> None:
        """One answer's reward; a reward that is not a number (an fp16 overflow) is not counted."""
        if not math.isfinite(reward):
            return
        if model not in self._reward_model_labels:
            if len(self._reward_model_labels) >= MAX_MODEL_LABELS:
                model = OTHER
            else:
                self._reward_model_labels.add(model)
        self.answer_reward.labels(model, reward_model).observe(reward)
        self.answer_reward_totals.labels(model, reward_model).observe(reward)
