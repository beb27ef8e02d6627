"""Guard and model-runner metrics, registered in the registry the app owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128)


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
        self.guard_latency = Histogram(
            "hhh_guard_latency_seconds",
            "Time a guard took to judge one batch, by stage.",
            ["guard", "stage"],
            buckets=_FAST,
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
