"""POST /v1/feedback is public and what it accepts is kept in Redis: a client must not be able to grow
Redis at will with huge feedback. Every field is capped (a 400 naming it), and so is the body (a 413)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.settings import FeedbackLimits

LIMITS = FeedbackLimits()


async def test_feedback_body_within_the_server_cap_but_over_the_routes_is_refused(
    client: AsyncTestClient[Any],
) -> None:
    # The server-wide cap (4 MiB by default; 64 KiB in these tests) is for prompts, not feedback.
    huge = {"completion_id": "chatcmpl-1", "rating": "up", "user": "u" * (60 * 1024)}
    response = await client.post("/v1/feedback", json=huge)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_feedback_body_just_over_the_cap_is_refused(client: AsyncTestClient[Any]) -> None:
    padding = " " * LIMITS.max_body_bytes  # valid JSON, short fields: only the body is too large
    content = b'{"completion_id": "chatcmpl-1", "rating": "up"' + padding.encode() + b"}"
    response = await client.post(
        "/v1/feedback", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("completion_id", "c" * (LIMITS.max_completion_id_chars + 1)),
        ("completion_id", ""),
        ("user", "u" * (LIMITS.max_user_chars + 1)),
        ("preferred_choice", LIMITS.max_preferred_choice + 1),
        ("preferred_choice", 2**62),
    ],
)
async def test_oversized_feedback_field_gets_400_naming_it(
    client: AsyncTestClient[Any], field: str, value: object
) -> None:
    body: dict[str, Any] = {"completion_id": "chatcmpl-1", "rating": "up", field: value}
    response = await client.post("/v1/feedback", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field
