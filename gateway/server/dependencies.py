"""The routes' dependencies, one provider per name: the lifespan's ``Services``, the caller's tenant, and
objects built once from the settings."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from feedback.recorder import EventRecorder
from gateway.auth import KeyRing, Tenant
from gateway.guarded.completion_service import CompletionService
from gateway.guarded.guardrails import Guardrails
from gateway.metrics import GatewayMetrics
from gateway.relay.proxy import Proxy
from gateway.responses.owners import ResponseOwners
from gateway.routes.labelstudio_webhook import LabelStudioWebhook
from gateway.server.metrics_access import MetricsAccess
from gateway.server.readiness import Readiness
from gateway.services import services_of
from gateway.settings import Settings


def provide_proxy(state: State) -> Proxy:
    return services_of(state).proxy


def provide_guardrails(state: State) -> Guardrails:
    return services_of(state).guardrails


def provide_completions(state: State) -> CompletionService:
    return services_of(state).completions


def provide_recorder(state: State) -> EventRecorder | None:
    return services_of(state).recorder


def provide_response_owners(state: State) -> ResponseOwners | None:
    return services_of(state).response_owners


def provide_labelstudio_webhook(state: State) -> LabelStudioWebhook | None:
    return services_of(state).labelstudio_webhook


def dependencies(
    settings: Settings,
    keyring: KeyRing,
    metrics: GatewayMetrics,
    metrics_access: MetricsAccess,
    readiness: Readiness,
) -> dict[str, Provide]:
    def provide_tenant(request: Request[Any, Any, Any]) -> Tenant:
        return keyring.authenticate(request.headers.get("authorization"))

    return {
        "proxy": Provide(provide_proxy, sync_to_thread=False),
        "guardrails": Provide(provide_guardrails, sync_to_thread=False),
        "completions": Provide(provide_completions, sync_to_thread=False),
        "recorder": Provide(provide_recorder, sync_to_thread=False),
        "labelstudio_webhook": Provide(provide_labelstudio_webhook, sync_to_thread=False),
        "response_owners": Provide(provide_response_owners, sync_to_thread=False),
        "tenant": Provide(provide_tenant, sync_to_thread=False),
        "feedback_limits": Provide(lambda: settings.feedback.limits, sync_to_thread=False),
        "gateway_metrics": Provide(lambda: metrics, sync_to_thread=False, use_cache=True),
        "metrics_access": Provide(lambda: metrics_access, sync_to_thread=False, use_cache=True),
        "readiness": Provide(lambda: readiness, sync_to_thread=False, use_cache=True),
        "limits": Provide(lambda: settings.limits, sync_to_thread=False, use_cache=True),
    }
