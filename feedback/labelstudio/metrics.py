"""The sync's Prometheus counters: served at the gateway's /metrics when the sync runs inside it, or on a
port of their own by ``hhh feedback sync --watch --metrics-port``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from feedback.labelstudio.sync import SyncSummary


class SyncMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.tasks_pushed = Counter(
            "hhh_labelstudio_tasks_pushed", "Ranking tasks pushed to Label Studio.", registry=registry
        )
        self.annotations = Counter(
            "hhh_labelstudio_annotations",
            "Annotations the sync's poll handled, by outcome (new, updated, same, rejected, deleted, ...).",
            ["outcome"],
            registry=registry,
        )
        self.rounds_failed = Counter(
            "hhh_labelstudio_sync_rounds_failed", "Sync rounds cut short by Label Studio.", registry=registry
        )

    def observe(self, summary: SyncSummary) -> None:
        self.tasks_pushed.inc(summary.pushed + summary.recovered)
        for outcome, count in summary.received.items():
            self.annotations.labels(outcome).inc(count)
