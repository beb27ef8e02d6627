"""Per-request context: id, timing and routing facts, carried in the ASGI scope's state."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
STATE_KEY = "hhh.context"


class RequestContext:
    __slots__ = ("model", "request_id", "started", "upstream_seconds", "usage_tokens")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.started = time.perf_counter()
        self.upstream_seconds = 0.0
        self.model = ""
        self.usage_tokens = 0  # reported or estimated by the relay, for the tokens-per-minute limits

    def overhead_seconds(self) -> float:
        """Time the gateway itself spent: everything but the wait on upstreams."""
        return max(0.0, time.perf_counter() - self.started - self.upstream_seconds)


def request_id_from(header: str | None) -> str:
    """The caller's ``x-request-id`` when it is sane, else a fresh UUID (some servers, llama.cpp's
    among them, reject any other shape when it is forwarded)."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return str(uuid.uuid4())


def context_of(scope: Any) -> RequestContext:
    context: RequestContext = scope["state"][STATE_KEY]
    return context
