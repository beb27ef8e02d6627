"""POST /v1/feedback: an application reports what its user thought of a completion.

Every field is capped, and so is the body (``feedback.limits``): what this public route accepts is kept
in Redis. Feedback is recorded under the sender's tenant and only ever applies to that tenant's own
completions (the export checks). An id that is unknown, or another tenant's, is accepted alike, so the
answer never tells whether it exists elsewhere.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import msgspec
from litestar import Request, post

from feedback.events import FeedbackEvent
from feedback.recorder import EventRecorder
from gateway.auth import Tenant
from gateway.errors import BodyTooLarge, GatewayError, InvalidRequest
from gateway.openapi.contract import contract
from gateway.protocol import check, decode_json_object
from gateway.settings import FeedbackLimits


class FeedbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    completion_id: str  # the completion's "id" (chatcmpl-...), or the x-request-id the gateway returned
    rating: Literal["up", "down"] | None = None
    preferred_choice: int | None = None  # with n>1: the index of the choice the user preferred
    comment: str | None = None
    user: str | None = None


class FeedbackDisabled(GatewayError):
    status_code = 503
    default_code = "feedback_disabled"


async def read_capped(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The body, read no further than ``limit`` bytes: a larger one is refused without being buffered."""
    too_large = BodyTooLarge(f"The feedback body is limited to {limit:,} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _check_limits(body: FeedbackRequest, limits: FeedbackLimits) -> None:
    for name, value, cap in (
        ("completion_id", body.completion_id, limits.max_completion_id_chars),
        ("comment", body.comment, limits.max_comment_chars),
        ("user", body.user, limits.max_user_chars),
    ):
        if value is not None and len(value) > cap:
            raise InvalidRequest(f"'{name}' is limited to {cap:,} characters.", param=name)
    if not body.completion_id:
        raise InvalidRequest("'completion_id' must not be empty.", param="completion_id")
    choice = body.preferred_choice
    if choice is not None and not 0 <= choice <= limits.max_preferred_choice:
        raise InvalidRequest(
            f"'preferred_choice' must be a choice index, 0 to {limits.max_preferred_choice}.",
            param="preferred_choice",
        )


@post(
    "/v1/feedback",
    status_code=202,
    summary="Report what a user thought of a completion (a rating, or the preferred choice)",
    tags=["feedback"],
    opt=contract(
        request="FeedbackRequest", responses={202: "FeedbackRecorded"}, errors=(400, 401, 413, 429, 503)
    ),
)
async def feedback(
    request: Request[Any, Any, Any],
    recorder: EventRecorder | None,
    tenant: Tenant,
    feedback_limits: FeedbackLimits,
) -> dict[str, Any]:
    raw = await read_capped(request, feedback_limits.max_body_bytes)
    body = check(decode_json_object(raw), FeedbackRequest)
    if body.rating is None and body.preferred_choice is None:
        raise InvalidRequest("Send 'rating' (\"up\" or \"down\") or 'preferred_choice'.", param="rating")
    _check_limits(body, feedback_limits)
    if recorder is None:
        raise FeedbackDisabled("This gateway does not record feedback (feedback.record is false).")
    event = FeedbackEvent(
        id=f"fb-{uuid.uuid4().hex}",
        created=time.time(),
        tenant=tenant.name,
        completion_id=body.completion_id,
        rating=body.rating,
        preferred_choice=body.preferred_choice,
        comment=body.comment,
        user=body.user,
    )
    recorder.record(event)
    return {"id": event.id, "object": "feedback", "status": "recorded"}
