"""What the gateway's routes run on while it serves (``Services``), and the lifespan that opens it.

Each resource is opened by a context manager of its own; ``open_services`` enters them in startup order
on one exit stack, so they close in the reverse order: the sync, the sampler, the streams (``Drain``),
the rate limits, the recorder, the guards, then the upstreams' client and the embedded LLM."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import msgspec
from litestar import Litestar
from litestar.datastructures import State

from feedback.constitution import Constitution
from feedback.embedded_redis import EmbeddedRedis
from feedback.labelstudio.receiver import AnnotationReceiver
from feedback.recorder import EventRecorder, RecorderMetrics
from feedback.redis_connection import redis_client
from feedback.spool import DiskSpool
from feedback.store import FeedbackStore
from gateway.auth import KeyRing
from gateway.credentials import mask_credentials
from gateway.feedback_worker import start_sync_worker
from gateway.guarded.best_of_n import BestOfNSampler
from gateway.guarded.completion_service import CompletionService
from gateway.guarded.guardrails import Guardrails
from gateway.guarded.revision import Reviser
from gateway.guarded.reward_scorers import RewardScorer, load_reward_scorers
from gateway.guarded.sampling import CandidateSampler
from gateway.metrics import GatewayMetrics
from gateway.rate_limit.middleware import RateLimits, open_rate_limits
from gateway.relay.embedded_llm import EmbeddedLLM
from gateway.relay.proxy import Proxy
from gateway.relay.upstream import UpstreamPool, build_client
from gateway.responses.owners import OwnerMetrics, ResponseOwners
from gateway.routes.labelstudio_webhook import LabelStudioWebhook
from gateway.server.heap import frozen_startup_heap, watched_collections
from gateway.server.shutdown import Drain
from gateway.settings import FeedbackSettings, Settings
from guards.pipeline import GuardEngine
from guards.runner import RunnerPool

log = logging.getLogger("hhh.app")  # the logger these lines have always been written to


class Groundwork(msgspec.Struct, frozen=True, kw_only=True):
    """What ``create_app`` builds from the settings before anything starts; the lifespan opens the rest."""

    settings: Settings
    data_dir: Path
    upstream_transport: httpx.AsyncBaseTransport | None  # a fake upstream in unit tests
    metrics: GatewayMetrics
    keyring: KeyRing
    runners: RunnerPool
    engine: GuardEngine
    rate_limits: RateLimits
    drain: Drain
    # By path, for the revise rules (None: the built-in one); loaded by ``create_app``.
    constitutions: dict[str | None, Constitution] = msgspec.field(default_factory=dict)
    # The best-of-n policies' reward models by name; None: loaded at start-up (a seam for unit tests).
    reward_scorers: dict[str, RewardScorer] | None = None
    # Counted on the gateway's registry (``create_app``); unregistered by default.
    owner_metrics: OwnerMetrics = msgspec.field(default_factory=lambda: OwnerMetrics(None))
    # The response-id bindings; None: opened on the gateway's Redis at start-up (a seam for unit tests).
    response_owners: ResponseOwners | None = None


class Services(msgspec.Struct, frozen=True, kw_only=True):
    """The opened objects the routes' dependencies hand out, one value for the app's whole life."""

    proxy: Proxy
    guardrails: Guardrails
    completions: CompletionService
    recorder: EventRecorder | None
    labelstudio_webhook: LabelStudioWebhook | None
    # Which tenant made which response id; None when no upstream keeps responses (supports_responses).
    response_owners: ResponseOwners | None = None


@asynccontextmanager
async def services_lifespan(groundwork: Groundwork, app: Litestar) -> AsyncIterator[None]:
    """Litestar's lifespan: the services live on ``app.state`` while the app serves (``services_of``)."""
    async with open_services(groundwork) as services:
        app.state.services = services
        with frozen_startup_heap(), watched_collections(groundwork.metrics.gc_pauses):
            yield


def services_of(state: State) -> Services:
    services: Services = state.services
    return services


@asynccontextmanager
async def open_services(ground: Groundwork) -> AsyncIterator[Services]:
    """Everything opened in startup order; the stack closes it in reverse."""
    settings, data_dir, metrics = ground.settings, ground.data_dir, ground.metrics
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(
            open_upstreams(settings, data_dir, ground.upstream_transport, metrics)
        )
        await stack.enter_async_context(open_guards(ground.engine, ground.runners))
        scorers = ground.reward_scorers
        if scorers is None:  # on the guards' runners, which close with them
            scorers = await load_reward_scorers(settings.policies, ground.runners)
        recorder = await stack.enter_async_context(open_recorder(settings, data_dir, metrics))
        await stack.enter_async_context(open_rate_limits(ground.rate_limits, settings, recorder, data_dir))
        owners = ground.response_owners
        if owners is None:
            owners = await stack.enter_async_context(
                open_response_owners(settings, recorder, data_dir, ground.owner_metrics)
            )
        # Streams end before the event writer and the limiter's Redis close (LIFO).
        stack.push_async_callback(ground.drain.settle)
        await discover_models(pool, metrics)
        proxy = Proxy(pool, metrics, settings.relay, ground.drain)
        guardrails = Guardrails(ground.engine, settings.policies, settings.guards)
        # The sampler closes before the recorder it writes to (LIFO).
        sampler = await stack.enter_async_context(open_sampler(proxy, recorder, settings.feedback))
        webhook = labelstudio_webhook_for(settings, recorder, metrics)
        await stack.enter_async_context(open_sync(settings, recorder, metrics))
        reviser = Reviser(proxy, guardrails, ground.constitutions, recorder)
        best_of_n = BestOfNSampler(proxy, guardrails, scorers, reviser)
        completions = CompletionService(proxy, guardrails, recorder, sampler, reviser, best_of_n)
        announce(ground.keyring, pool)
        yield Services(
            proxy=proxy,
            guardrails=guardrails,
            completions=completions,
            recorder=recorder,
            labelstudio_webhook=webhook,
            response_owners=owners,
        )


@asynccontextmanager
async def open_upstreams(
    settings: Settings, data_dir: Path, transport: httpx.AsyncBaseTransport | None, metrics: GatewayMetrics
) -> AsyncIterator[UpstreamPool]:
    """The configured upstreams (the embedded LLM when there are none) behind the one httpx client. Their
    models are discovered later (``discover_models``), once the guards have loaded: an upstream started
    alongside the gateway has had that time to come up, and a failed discovery is only retried later."""
    async with AsyncExitStack() as stack:
        upstreams = list(settings.upstreams)
        if not upstreams:
            embedded = EmbeddedLLM(settings.embedded_llm, data_dir, settings.server.startup_timeout_s)
            await stack.enter_async_context(embedded)
            upstreams = [embedded.upstream_settings()]
        server = settings.server
        client = await stack.enter_async_context(
            build_client(server.upstream_max_connections, server.upstream_max_keepalive, transport)
        )
        yield UpstreamPool(upstreams, client, metrics)


async def discover_models(pool: UpstreamPool, metrics: GatewayMetrics) -> None:
    await pool.discover()
    metrics.label_models_served_by(pool.serves)  # any other model name is labelled "other"


@asynccontextmanager
async def open_guards(engine: GuardEngine, runners: RunnerPool) -> AsyncIterator[None]:
    """The guard engine, then the model runners, close even when the engine fails to start."""
    try:
        try:
            await engine.start()
            yield
        finally:
            await engine.close()
    finally:
        await runners.close()


@asynccontextmanager
async def open_recorder(
    settings: Settings, data_dir: Path, metrics: GatewayMetrics
) -> AsyncIterator[EventRecorder | None]:
    """Redis (the configured one, or an embedded redis-server) and the event recorder in front of it."""
    if not settings.feedback.record:
        log.info("feedback recording is off (feedback.record: false)")
        yield None
        return
    async with AsyncExitStack() as stack:
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
        yield recorder


@asynccontextmanager
async def open_response_owners(
    settings: Settings, recorder: EventRecorder | None, data_dir: Path, metrics: OwnerMetrics
) -> AsyncIterator[ResponseOwners | None]:
    """The response-id bindings, when an upstream keeps responses (``supports_responses``): on the Redis
    events go to (the recorder's client), else on ``redis.url``, else on an embedded server of their own
    (its own directory: two servers must not share one append-only file)."""
    if not any(upstream.supports_responses for upstream in settings.upstreams):
        yield None
        return
    async with AsyncExitStack() as stack:
        if recorder is not None:
            client = recorder.client
        else:
            url = settings.redis.url
            if url is None:
                url = (await stack.enter_async_context(EmbeddedRedis(data_dir / "redis-responses"))).url
            client = redis_client(url)
            stack.push_async_callback(client.aclose)
        log.info("response ids are bound to tenants in Redis for %.0f s", settings.responses.owner_ttl_s)
        yield ResponseOwners(client, settings.responses.owner_ttl_s, metrics)


@asynccontextmanager
async def open_sampler(
    proxy: Proxy, recorder: EventRecorder | None, feedback: FeedbackSettings
) -> AsyncIterator[CandidateSampler | None]:
    """The sampler of ranking candidates, when events are recorded and some traffic is sampled."""
    if recorder is None or not (feedback.sampling.fraction > 0 or feedback.tenant_sampling):
        yield None
        return
    sampler = CandidateSampler(proxy, recorder, feedback)
    try:
        yield sampler
    finally:
        await sampler.close()


def labelstudio_webhook_for(
    settings: Settings, recorder: EventRecorder | None, metrics: GatewayMetrics
) -> LabelStudioWebhook | None:
    secret = settings.feedback.labelstudio.webhook_secret
    if recorder is None or not secret:
        return None
    receiver = AnnotationReceiver(
        FeedbackStore(recorder.client), buckets=settings.feedback.labelstudio.buckets
    )
    log.info("Label Studio webhook on POST /v1/feedback/labelstudio")
    return LabelStudioWebhook(receiver, secret, metrics.webhook_calls)


@asynccontextmanager
async def open_sync(
    settings: Settings, recorder: EventRecorder | None, metrics: GatewayMetrics
) -> AsyncIterator[None]:
    """The Label Studio sync's rounds in the background, when ``run_in_gateway`` asks for them."""
    labelstudio = settings.feedback.labelstudio
    async with AsyncExitStack() as stack:
        if recorder is not None and labelstudio.run_in_gateway:
            await start_sync_worker(labelstudio, settings.redis.stream, recorder, metrics.registry, stack)
        yield


def announce(keyring: KeyRing, pool: UpstreamPool) -> None:
    """The last startup lines: a loud warning when anyone may call, and where requests go."""
    if keyring.is_open:
        log.warning("=" * 72)
        log.warning("NO API KEYS CONFIGURED: this gateway is OPEN to anyone who can reach it.")
        log.warning("Add auth.keys to the config (`hhh keys new --tenant NAME` makes one).")
        log.warning("=" * 72)
    shown = (f"{u.name} → {mask_credentials(u.settings.url)}" for u in pool.upstreams)
    log.info("upstreams: %s", ", ".join(shown))
