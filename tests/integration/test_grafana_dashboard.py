"""The Grafana dashboard (deploy/grafana) queries only what is exported: every metric name in its queries is
in a running gateway's /metrics (or the sync worker's, which serves ``SyncMetrics``), with a suffix its
type really has, and every label it groups or filters by is one those series carry. A renamed metric
otherwise leaves an empty panel that nobody notices."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import openai
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from feedback.labelstudio.metrics import SyncMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "hhh-gateway.json"
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
}
# Labels that Prometheus adds at scrape time, and the histogram bucket bound.
SCRAPE_LABELS = {"job", "instance", "le"}
METRIC = re.compile(r"\bhhh_[a-z_]+")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")


def _exported(text: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Sample names a scrape can hold (by family type), and the labels each family's samples carry."""
    names: dict[str, str] = {}
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
        labels[family.name] = {label for sample in family.samples for label in sample.labels}
    return names, labels


def _queries() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_every_metric_and_label_the_dashboard_queries_is_exported(
    sync_client: openai.OpenAI, gateway_url: str
) -> None:
    # Traffic first, so that the labelled families have samples whose labels can be checked.
    sync_client.chat.completions.create(
        model="stub-echo", messages=[{"role": "user", "content": "Name a colour of the sky."}]
    )
    scraped = httpx.get(gateway_url.removesuffix("/v1") + "/metrics", timeout=30)
    assert scraped.status_code == 200
    worker = generate_latest(_worker_registry()).decode()  # what `hhh feedback sync --metrics-port` serves
    names, labels = _exported(scraped.text + worker)
    assert "hhh_requests_total" in names  # the scrape parsed

    queries = _queries()
    assert len(queries) >= 20
    used: set[str] = set()
    for query in queries:
        metrics = METRIC.findall(query)
        assert metrics, query
        for metric in metrics:
            assert metric in names, f"{metric} is not exported (query: {query})"
            used.add(names[metric])
        wanted = {
            label.strip() for group in GROUPING.findall(query) for label in group.split(",") if label.strip()
        } | set(MATCHER.findall(query))
        for metric in metrics:
            family = names[metric]
            if labels[family]:  # a family with samples: its labels are known
                missing = wanted - SCRAPE_LABELS - labels[family]
                assert not missing, f"{family} has no label {missing} (query: {query})"
    # The panels: traffic, overhead, guards, blocks, batches, events, the sync.
    for family in ("hhh_requests", "hhh_gateway_overhead_seconds", "hhh_guard_latency_seconds",
                   "hhh_guard_decisions", "hhh_guard_blocks", "hhh_runner_batch_size", "hhh_events_recorded",
                   "hhh_events_spooled", "hhh_labelstudio_tasks_pushed"):  # fmt: skip
        assert family in used, family


def _worker_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    SyncMetrics(registry)
    return registry
