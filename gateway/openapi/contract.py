"""What a route tells the OpenAPI document about itself, beside its summary and tags (see
``gateway.openapi.route``).

Kept apart from the document's builder so that routes can import it without importing every schema."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

CONTRACT_KEY = "contract"
INFERENCE_ERRORS = (400, 401, 404, 413, 429, 502, 503, 504)


class Contract(msgspec.Struct, kw_only=True, frozen=True):
    # Component schema names: the JSON request body, and the body of each success status.
    request: str | None = None
    responses: dict[int, str]
    # Statuses answered with OpenAI's error envelope.
    errors: tuple[int, ...] = ()
    # "bearer": a gateway key; "webhook_secret": Label Studio's shared secret header; None: no credential.
    security: Literal["bearer", "webhook_secret"] | None = "bearer"
    media_type: str = "application/json"
    # With ``"stream": true`` in the body, the first success status answers server-sent events.
    streams: bool = False


def contract(**fields: Any) -> dict[str, Contract]:
    """The ``opt`` of a route decorator: ``@post(..., opt=contract(request=..., responses=...))``."""
    return {CONTRACT_KEY: Contract(**fields)}
