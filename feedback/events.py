"""What the gateway records about each completion: plain data, the schema the feedback loop reads."""

from __future__ import annotations

from typing import Any

import msgspec

SCHEMA_VERSION = 1


class Timings(msgspec.Struct):
    total_ms: float
    upstream_ms: float
    overhead_ms: float


class CompletionEvent(msgspec.Struct, kw_only=True):
    schema: int = SCHEMA_VERSION
    # The gateway's own id for this completion, unique: what the feedback store is keyed by. Never the
    # client's x-request-id, which two tenants (or one careless client) can send alike.
    id: str
    completion_id: str  # the upstream's id for the completion ("chatcmpl-...")
    created: float  # unix time
    tenant: str
    model: str
    endpoint: str  # "chat.completions" or "completions"
    stream: bool
    # The request as the upstream received it: after the input guards' redaction, without the
    # gateway's own fields. Nothing unredacted is ever recorded.
    request: dict[str, Any]
    choices: list[dict[str, Any]]  # as the client received them (after output guards)
    guardrails: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    timings: Timings | None = None
    complete: bool = True  # false: the stream ended early (client gone, upstream failed)
    # Extra candidates the gateway asked for after answering (sampling) name the request they are for.
    candidate_of: str | None = None
    sampling: dict[str, Any] | None = None  # what was changed for this candidate (temperature, model)
    # On an original: how many extra candidates were asked for, so the sync knows when the set is whole.
    candidates_requested: int = 0
    # The x-request-id the client saw (its own, or one the gateway made): feedback may name it.
    request_id: str | None = None


class FeedbackEvent(msgspec.Struct, kw_only=True):
    """A user's judgement reported by the application: thumbs, or the choice they preferred."""

    schema: int = SCHEMA_VERSION
    id: str  # this feedback's own id
    created: float
    tenant: str
    completion_id: str  # the upstream's completion id, or the gateway's request id
    rating: str | None = None  # "up" or "down"
    preferred_choice: int | None = None
    comment: str | None = None
    user: str | None = None


Event = CompletionEvent | FeedbackEvent


def event_kind(event: Event) -> str:
    return "feedback" if isinstance(event, FeedbackEvent) else "completion"


def encode_event(event: Event) -> bytes:
    return msgspec.json.encode(event)


def decode_event(data: bytes) -> CompletionEvent:
    return msgspec.json.decode(data, type=CompletionEvent)


def decode_feedback(data: bytes) -> FeedbackEvent:
    return msgspec.json.decode(data, type=FeedbackEvent)
