"""POST /v1/feedback: an application reports what its user thought of a completion."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import msgspec
from litestar import Request, post

from feedback.events import FeedbackEvent
from feedback.recorder import EventRecorder
from gateway.api_contract import contract
from gateway.auth import Tenant
from gateway.errors import GatewayError, InvalidRequest
from gateway.protocol import check, decode_json_object


class FeedbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    completion_id: str  # the completion's "id" (chatcmpl-...), or the x-request-id the gateway returned
    rating: Literal["up", "down"] | None = None
    preferred_choice: int | None = None  # with n>1: the index of the choice the user preferred
    comment: str | None = None
    user: str | None = None


class FeedbackDisabled(GatewayError):
    status_code = 503
    default_code = "feedback_disabled"


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
    request: Request[Any, Any, Any], recorder: EventRecorder | None, tenant: Tenant
) -> dict[str, Any]:
    body = check(decode_json_object(await request.body()), FeedbackRequest)
    if body.rating is None and body.preferred_choice is None:
        raise InvalidRequest("Send 'rating' (\"up\" or \"down\") or 'preferred_choice'.", param="rating")
    if body.preferred_choice is not None and body.preferred_choice < 0:
        raise InvalidRequest(
            "'preferred_choice' must be a choice index (0 or more).", param="preferred_choice"
        )
    if body.comment is not None and len(body.comment) > 4000:
        raise InvalidRequest("'comment' is limited to 4,000 characters.", param="comment")
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
