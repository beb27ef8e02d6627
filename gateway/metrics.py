"""Prometheus metrics, in a registry owned by one app (no process-global state, so tests stay apart)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

# Buckets from 0.1 ms: the gateway's own overhead lives well under the default 5 ms first bucket.
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


# Label values come from route templates and known values only: a raw path or a client's model name
# would let anyone add series without bound (12,442 requests once added 448,056 lines, 38.9 MB a scrape).
OTHER = "other"


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._serves: Callable[[str], bool] = lambda _model: False
        self.requests = Counter(
            "hhh_requests",
            "Requests served, by route, model and HTTP status.",
            ["route", "model", "status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "hhh_request_duration_seconds",
            "Time from request start to response headers (non-stream: to the full body).",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "hhh_upstream_latency_seconds",
            "Time the upstream took to answer with headers.",
            ["upstream"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "hhh_upstream_errors",
            "Upstream failures by kind (unreachable, timeout, status, stream).",
            ["upstream", "kind"],
            registry=self.registry,
        )
        self.overhead = Histogram(
            "hhh_gateway_overhead_seconds",
            "Time the gateway itself added: total time minus the time spent waiting on the upstream.",
            ["route"],
            buckets=_OVERHEAD_BUCKETS,
            registry=self.registry,
        )
        self.stream_cancellations = Counter(
            "hhh_stream_client_disconnects",
            "Streams whose client went away; each cancels its upstream request.",
            registry=self.registry,
        )

        self.gc_pauses = Histogram(
            "hhh_gc_pause_seconds",
            "Pauses of Python's garbage collector, by generation: every thread waits while one runs.",
            ["generation"],
            buckets=_OVERHEAD_BUCKETS,
            registry=self.registry,
        )
        self.webhook_calls = Counter(
            "hhh_labelstudio_webhook_calls",
            "Label Studio webhook calls by outcome (new, updated, same, rejected, unauthenticated, ...).",
            ["outcome"],
            registry=self.registry,
        )

    def label_models_served_by(self, serves: Callable[[str], bool]) -> None:
        """Set once the upstreams are known: the models that get a ``model`` label value of their own."""
        self._serves = serves

    def model_label(self, model: str) -> str:
        """The model's name if the gateway serves it, "" for none, else "other"."""
        if not model or self._serves(model):
            return model
        return OTHER

    def render(self) -> bytes:
        return generate_latest(self.registry)
