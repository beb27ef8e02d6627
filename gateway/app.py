"""The app factory: one settings tree in, one Litestar app out. Resources live in the lifespan
(``gateway.services``)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path

import httpx
from litestar import Litestar
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.routes import HTTPRoute

from gateway.auth import KeyRing
from gateway.errors import GatewayError
from gateway.guarded.revision import load_constitutions
from gateway.guarded.reward_scorers import RewardScorer, check_best_of_n
from gateway.metrics import GatewayMetrics
from gateway.openapi.route import openapi_route
from gateway.rate_limit.middleware import RateLimits, rate_limit_middleware
from gateway.responses.owners import OwnerMetrics, ResponseOwners
from gateway.routes import feedback as feedback_routes
from gateway.routes import inference, labelstudio_webhook, models, moderations, operations
from gateway.server.dependencies import dependencies
from gateway.server.error_handlers import (
    add_request_id_everywhere,
    on_gateway_error,
    on_http_exception,
    on_unexpected,
)
from gateway.server.metrics_access import MetricsAccess
from gateway.server.middleware import request_observer
from gateway.server.readiness import Readiness
from gateway.server.shutdown import Drain
from gateway.services import Groundwork, services_lifespan
from gateway.settings import Settings
from guards.metrics import GuardMetrics
from guards.pipeline import GuardEngine
from guards.policy import check_references
from guards.protocol import Guard
from guards.registry import GuardResources, build_guards
from guards.runner import RunnerPool
from guards.verdict_cache import VerdictCache

_ROUTES = (
    inference.chat_completions,
    inference.legacy_completions,
    inference.responses,
    inference.retrieve_response,
    inference.cancel_response,
    moderations.moderations,
    feedback_routes.feedback,
    labelstudio_webhook.labelstudio_webhook,
    inference.embeddings,
    models.list_models,
    models.retrieve_model,
    operations.health,
    operations.ready,
    operations.metrics,
)


def used_guards(settings: Settings, guards: Mapping[str, Guard]) -> dict[str, Guard]:
    """Check every policy against the configured guards; return the guards some policy uses (only those
    load models)."""
    check_references(
        settings.policies,
        settings.guards,
        {name: set(g.categories) for name, g in guards.items()},
        {name: int(getattr(g, "min_stream_overlap", 0)) for name, g in guards.items()},
    )
    policies = settings.policies.named_policies()
    used = {rule.guard for _, policy in policies for rule in policy.input + policy.output}
    return {name: guard for name, guard in guards.items() if name in used}


def create_app(
    settings: Settings,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    guards: Mapping[str, Guard] | None = None,
    reward_scorers: Mapping[str, RewardScorer] | None = None,
    response_owners: ResponseOwners | None = None,
) -> Litestar:
    """Build the gateway. ``upstream_transport``, ``guards`` and ``reward_scorers`` (best-of-n's, by the
    name policies give them) are seams for unit tests (fake upstreams, guards and reward models);
    configuration errors raise here, before anything starts."""
    # The order below is the order metrics are registered in, so the order /metrics lists them in.
    metrics = GatewayMetrics()
    keyring = KeyRing(settings.auth)
    rate_limits = RateLimits(settings, metrics.registry)
    data_dir = Path(settings.data_dir).expanduser()
    runners = RunnerPool(GuardMetrics(metrics.registry))
    if guards is None:
        guards = build_guards(settings.guards, GuardResources(runners, runners.metrics, data_dir))
    cached = settings.verdict_cache
    cache = VerdictCache(cached.entries, cached.max_chars, cached.max_text_chars) if cached.entries else None
    engine = GuardEngine(used_guards(settings, guards), runners.metrics, cache)
    check_best_of_n(settings.policies, settings.limits)
    metrics_access = MetricsAccess(settings.server.operations, keyring)
    readiness = Readiness(settings.server.operations.ready_cache_s)
    drain = Drain(settings.server.shutdown_grace_s)  # the server starts it (gateway.server.shutdown.serve)
    ground = Groundwork(
        settings=settings,
        data_dir=data_dir,
        upstream_transport=upstream_transport,
        metrics=metrics,
        keyring=keyring,
        runners=runners,
        engine=engine,
        rate_limits=rate_limits,
        drain=drain,
        constitutions=load_constitutions(settings.policies),
        reward_scorers=None if reward_scorers is None else dict(reward_scorers),
        owner_metrics=OwnerMetrics(metrics.registry),
        response_owners=response_owners,
    )
    app = Litestar(
        route_handlers=list(_ROUTES),
        lifespan=[partial(services_lifespan, ground)],
        dependencies=dependencies(settings, keyring, metrics, metrics_access, readiness),
        middleware=[request_observer(metrics), rate_limit_middleware(rate_limits, keyring)],
        exception_handlers={
            GatewayError: on_gateway_error,
            HTTPException: on_http_exception,
            Exception: on_unexpected,
        },
        before_send=[add_request_id_everywhere],
        state=State({"drain": drain}),
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=None,
        logging_config=None,  # the CLI configures logging once, for the whole process
        debug=False,
    )
    # GET /openapi.json describes every route registered above (Litestar's own generation stays off).
    app.register(openapi_route(h for r in app.routes if isinstance(r, HTTPRoute) for h in r.route_handlers))
    return app
