from __future__ import annotations

import json
from typing import Any


def sse_events(text: str) -> list[Any]:
    """The data of each server-sent event: parsed JSON, or the literal "[DONE]"."""
    payloads = [block[len("data: ") :] for block in text.split("\n\n") if block.startswith("data: ")]
    return [payload if payload == "[DONE]" else json.loads(payload) for payload in payloads]
