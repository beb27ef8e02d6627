"""POST /v1/feedback/labelstudio: Label Studio's webhook, announcing annotations as annotators save them.

Authenticated by a shared secret header (Label Studio can send custom headers, not sign bodies). Label
Studio waits only a second and never retries, so this answers quickly, and what it misses (the gateway
down, Redis down) the sync's reconciling poll picks up: a failure here loses nothing.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import msgspec
import redis.exceptions
from litestar import Request, post
from prometheus_client import Counter

from feedback.labelstudio.receiver import AnnotationReceiver, MalformedWebhook
from feedback.labelstudio.settings import SECRET_HEADER
from gateway.errors import AuthenticationFailed, GatewayError, InvalidRequest
from gateway.limits import LimitsSettings, check_body_depth
from gateway.openapi.contract import contract

log = logging.getLogger("hhh.labelstudio")


class WebhookDisabled(GatewayError):
    status_code = 503
    default_code = "webhook_disabled"


class WebhookStoreUnavailable(GatewayError):
    status_code = 503
    default_code = "feedback_store_unavailable"


class LabelStudioWebhook:
    """What the route needs, made by the app's lifespan when a secret is configured."""

    def __init__(self, receiver: AnnotationReceiver, secret: str, calls: Counter) -> None:
        self.receiver = receiver
        self.secret = secret.encode()
        self.calls = calls


@post(
    "/v1/feedback/labelstudio",
    status_code=200,
    summary="Label Studio's webhook: annotations as annotators save them",
    tags=["feedback"],
    opt=contract(
        request="LabelStudioEvent",
        responses={200: "WebhookOutcomes"},
        errors=(400, 401, 413, 503),
        security="webhook_secret",
    ),
)
async def labelstudio_webhook(
    request: Request[Any, Any, Any], labelstudio_webhook: LabelStudioWebhook | None, limits: LimitsSettings
) -> dict[str, Any]:
    client = request.client.host if request.client else "?"
    if labelstudio_webhook is None:
        raise WebhookDisabled(
            "The Label Studio webhook is off: set feedback.labelstudio.webhook_secret (and keep "
            "feedback.record on)."
        )
    hook = labelstudio_webhook
    given = request.headers.get(SECRET_HEADER, "").encode()
    if not hmac.compare_digest(given, hook.secret):
        hook.calls.labels("unauthenticated").inc()
        log.warning("webhook call from %s refused: %s header missing or wrong", client, SECRET_HEADER)
        raise AuthenticationFailed(f"Missing or wrong {SECRET_HEADER} header.", code="invalid_webhook_secret")
    body = await request.body()
    try:
        await check_body_depth(body, limits.max_json_depth)  # deeper nesting exhausts the decoder's stack
    except InvalidRequest:
        hook.calls.labels("malformed").inc()
        raise
    try:
        payload = msgspec.json.decode(body)
        outcomes = await hook.receiver.webhook(payload)
    except (msgspec.DecodeError, MalformedWebhook) as exc:
        hook.calls.labels("malformed").inc()
        log.warning("malformed webhook call from %s refused: %s", client, exc)
        raise InvalidRequest(f"Not a Label Studio annotation event: {exc}") from None
    except (redis.exceptions.RedisError, OSError) as exc:
        hook.calls.labels("store_unavailable").inc()
        log.warning("webhook call not stored, Redis unavailable (%s); the sync's poll will catch it", exc)
        raise WebhookStoreUnavailable("The feedback store is unavailable; try again later.") from None
    for outcome, count in outcomes.items():
        hook.calls.labels(outcome).inc(count)
    return {"object": "labelstudio.webhook", "outcomes": dict(outcomes)}
