"""The app factory: one settings tree in, one Litestar app out. Resources live in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope

from feedback.embedded_redis import EmbeddedRedis
from feedback.labelstudio.receiver import AnnotationReceiver
from feedback.recorder import EventRecorder, RecorderMetrics
from feedback.redis_connection import redis_client
from feedback.spool import DiskSpool
from feedback.store import FeedbackStore
from gateway.auth import KeyRing, Tenant
from gateway.context import request_id_from
from gateway.credentials import mask_credentials
from gateway.errors import BodyTooLarge, GatewayError, InvalidRequest, RouteNotFound, encode_error
from gateway.feedback_worker import start_sync_worker
from gateway.guarded.completion_service import CompletionService
from gateway.guarded.guardrails import Guardrails
from gateway.guarded.sampling import CandidateSampler
from gateway.metrics import GatewayMetrics
from gateway.openapi.route import openapi_route
from gateway.rate_limit.middleware import RateLimits, open_rate_limits, rate_limit_middleware
from gateway.relay.embedded_llm import EmbeddedLLM
from gateway.relay.proxy import Proxy
from gateway.relay.upstream import UpstreamPool, build_client
from gateway.routes import feedback as feedback_routes
from gateway.routes import inference, labelstudio_webhook, models, moderations, operations
from gateway.routes.labelstudio_webhook import LabelStudioWebhook
from gateway.server.metrics_access import MetricsAccess
from gateway.server.middleware import REQUEST_ID_HEADER, request_observer
from gateway.server.readiness import Readiness
from gateway.server.shutdown import Drain
from gateway.settings import Settings
from guards.metrics import GuardMetrics
from guards.pipeline import GuardEngine
from guards.policy import check_references
from guards.protocol import Guard
from guards.registry import GuardResources, build_guards
from guards.runner import RunnerPool

log = logging.getLogger("hhh.app")


def _error_response(error: GatewayError) -> Response[bytes]:
    return Response(content=encode_error(error), status_code=error.status_code, media_type="application/json")


def _on_gateway_error(_: Request[Any, Any, Any], exc: GatewayError) -> Response[bytes]:
    return _error_response(exc)


def _on_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if exc.status_code == 413:
        return _error_response(BodyTooLarge("The request body is larger than this gateway accepts."))
    if exc.status_code in (404, 405):
        return _error_response(RouteNotFound(str(exc.detail), exc.status_code))
    if exc.status_code == 400:
        return _error_response(InvalidRequest(str(exc.detail)))
    error = GatewayError(str(exc.detail))
    error.status_code = exc.status_code
    return _error_response(error)


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # The one place a bug surfaces: logged with its trace for operators, never shown to clients.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error_response(GatewayError("The gateway failed to process the request; it has been logged."))


async def _add_request_id_everywhere(message: Message, scope: Scope) -> None:
    """Unrouted requests (404s) skip route middleware; they still get an x-request-id."""
    if message["type"] == "http.response.start":
        headers = list(message.get("headers", ()))
        if not any(key == REQUEST_ID_HEADER for key, _ in headers):
            message["headers"] = [*headers, (REQUEST_ID_HEADER, request_id_from(None).encode())]


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


async def _open_recorder(
    settings: Settings, data_dir: Path, metrics: GatewayMetrics, stack: AsyncExitStack
) -> EventRecorder | None:
    """Redis (the configured one, or an embedded redis-server) and the event recorder in front of it."""
    if not settings.feedback.record:
        log.info("feedback recording is off (feedback.record: false)")
        return None
    url = settings.redis.url
    if url is None:
        url = (await stack.enter_async_context(EmbeddedRedis(data_dir / "redis"))).url
    client = redis_client(url)
    stack.push_async_callback(client.aclose)
    recorder = EventRecorder(
        client,
        DiskSpool(data_dir / "spool"),
        RecorderMetrics(metrics.registry),
        stream=settings.redis.stream,
        max_length=settings.redis.max_length,
        replay_every_s=settings.redis.replay_every_s,
        dedupe_s=settings.redis.replay_dedupe_s,
    )
    await recorder.start()
    stack.push_async_callback(recorder.close)  # runs before the client closes: queued events are kept
    log.info("recording completions to %s stream %s", mask_credentials(url), settings.redis.stream)
    return recorder


def _labelstudio_webhook(
    settings: Settings, recorder: EventRecorder | None, metrics: GatewayMetrics
) -> LabelStudioWebhook | None:
    secret = settings.feedback.labelstudio.webhook_secret
    if recorder is None or not secret:
        return None
    receiver = AnnotationReceiver(FeedbackStore(recorder.client))
    log.info("Label Studio webhook on POST /v1/feedback/labelstudio")
    return LabelStudioWebhook(receiver, secret, metrics.webhook_calls)


def create_app(
    settings: Settings,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    guards: Mapping[str, Guard] | None = None,
) -> Litestar:
    """Build the gateway. ``upstream_transport`` and ``guards`` are seams for unit tests (fake upstreams,
    fake guards); configuration errors raise here, before anything starts."""
    metrics = GatewayMetrics()
    keyring = KeyRing(settings.auth)
    rate_limits = RateLimits(settings, metrics.registry)
    data_dir = Path(settings.data_dir).expanduser()
    runners = RunnerPool(GuardMetrics(metrics.registry))
    if guards is None:
        guards = build_guards(settings.guards, GuardResources(runners, runners.metrics, data_dir))
    engine = GuardEngine(used_guards(settings, guards), runners.metrics)
    operations_settings = settings.server.operations
    metrics_access = MetricsAccess(operations_settings, keyring)
    readiness = Readiness(operations_settings.ready_cache_s)
    drain = Drain(settings.server.shutdown_grace_s)  # the server starts it (gateway.server.shutdown.serve)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            upstreams = list(settings.upstreams)
            if not upstreams:
                embedded = EmbeddedLLM(
                    settings.embedded_llm,
                    data_dir,
                    settings.server.startup_timeout_s,
                )
                await stack.enter_async_context(embedded)
                upstreams = [embedded.upstream_settings()]
            client = await stack.enter_async_context(
                build_client(
                    settings.server.upstream_max_connections,
                    settings.server.upstream_max_keepalive,
                    upstream_transport,
                )
            )
            stack.push_async_callback(runners.close)
            stack.push_async_callback(engine.close)
            await engine.start()
            recorder = await _open_recorder(settings, data_dir, metrics, stack)
            await open_rate_limits(rate_limits, settings, recorder, data_dir, stack)
            # Streams end before the event writer and the limiter's Redis close (LIFO).
            stack.push_async_callback(drain.settle)
            pool = UpstreamPool(upstreams, client, metrics)
            await pool.discover()
            metrics.label_models_served_by(pool.serves)  # any other model name is labelled "other"
            proxy = Proxy(pool, metrics, settings.relay, drain)
            guardrails = Guardrails(engine, settings.policies, settings.guards)
            app.state.proxy = proxy
            app.state.guardrails = guardrails
            sampler = None
            feedback = settings.feedback
            if recorder is not None and (feedback.sampling.fraction > 0 or feedback.tenant_sampling):
                sampler = CandidateSampler(proxy, recorder, feedback)
                stack.push_async_callback(sampler.close)  # before the recorder closes (LIFO)
            app.state.recorder = recorder
            app.state.labelstudio_webhook = _labelstudio_webhook(settings, recorder, metrics)
            labelstudio = settings.feedback.labelstudio
            if recorder is not None and labelstudio.run_in_gateway:
                await start_sync_worker(labelstudio, settings.redis.stream, recorder, metrics.registry, stack)
            app.state.completions = CompletionService(proxy, guardrails, recorder, sampler)
            if keyring.is_open:
                log.warning("=" * 72)
                log.warning("NO API KEYS CONFIGURED: this gateway is OPEN to anyone who can reach it.")
                log.warning("Add auth.keys to the config (`hhh keys new --tenant NAME` makes one).")
                log.warning("=" * 72)
            shown = (f"{u.name} → {mask_credentials(u.url)}" for u in upstreams)
            log.info("upstreams: %s", ", ".join(shown))
            yield

    def provide_proxy(state: State) -> Proxy:
        proxy: Proxy = state.proxy
        return proxy

    def provide_guardrails(state: State) -> Guardrails:
        guardrails: Guardrails = state.guardrails
        return guardrails

    def provide_completions(state: State) -> CompletionService:
        completions: CompletionService = state.completions
        return completions

    def provide_recorder(state: State) -> EventRecorder | None:
        recorder: EventRecorder | None = state.recorder
        return recorder

    def provide_labelstudio_webhook(state: State) -> LabelStudioWebhook | None:
        hook: LabelStudioWebhook | None = state.labelstudio_webhook
        return hook

    def provide_tenant(request: Request[Any, Any, Any]) -> Tenant:
        return keyring.authenticate(request.headers.get("authorization"))

    app = Litestar(
        route_handlers=[
            inference.chat_completions,
            inference.legacy_completions,
            moderations.moderations,
            feedback_routes.feedback,
            labelstudio_webhook.labelstudio_webhook,
            inference.embeddings,
            models.list_models,
            models.retrieve_model,
            operations.health,
            operations.ready,
            operations.metrics,
        ],
        lifespan=[lifespan],
        dependencies={
            "proxy": Provide(provide_proxy, sync_to_thread=False),
            "guardrails": Provide(provide_guardrails, sync_to_thread=False),
            "completions": Provide(provide_completions, sync_to_thread=False),
            "recorder": Provide(provide_recorder, sync_to_thread=False),
            "labelstudio_webhook": Provide(provide_labelstudio_webhook, sync_to_thread=False),
            "tenant": Provide(provide_tenant, sync_to_thread=False),
            "feedback_limits": Provide(lambda: settings.feedback.limits, sync_to_thread=False),
            "gateway_metrics": Provide(lambda: metrics, sync_to_thread=False, use_cache=True),
            "metrics_access": Provide(lambda: metrics_access, sync_to_thread=False, use_cache=True),
            "readiness": Provide(lambda: readiness, sync_to_thread=False, use_cache=True),
            "limits": Provide(lambda: settings.limits, sync_to_thread=False, use_cache=True),
        },
        middleware=[request_observer(metrics), rate_limit_middleware(rate_limits, keyring)],
        exception_handlers={
            GatewayError: _on_gateway_error,
            HTTPException: _on_http_exception,
            Exception: _on_unexpected,
        },
        before_send=[_add_request_id_everywhere],
        state=State({"drain": drain}),
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=None,
        logging_config=None,  # the CLI configures logging once, for the whole process
        debug=False,
    )
    # GET /openapi.json describes every route registered above (Litestar's own generation stays off).
    app.register(openapi_route(h for r in app.routes if isinstance(r, HTTPRoute) for h in r.route_handlers))
    return app
