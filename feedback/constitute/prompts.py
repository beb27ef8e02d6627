"""The prompts to constitute: red-team prompts from a JSON-lines file, or the recorded traffic's prompts.

A file holds one JSON object a line: ``{"id"?: str, "prompt": str}`` or ``{"id"?: str, "messages":
[{"role", "content"}, ...]}``. A prompt's key, which the state file remembers, is its ``id`` when given,
else a hash of its messages (the export's prompt id), so the same conversation is one prompt.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec

from feedback.events import decode_event
from feedback.preferences.export import prompt_id
from feedback.preferences.formats import messages_of


class Prompt(msgspec.Struct, frozen=True, kw_only=True):
    key: str  # what the state file is keyed by
    request: dict[str, Any]  # {"messages": [...]}
    request_id: str  # the file's id, or the recorded completion's event id
    tenant: str | None = None  # recorded prompts: the tenant whose traffic it was


# Endpoints whose events hold a chat conversation (a Responses call is recorded as one: gateway.responses).
CONVERSATIONS = frozenset({"chat.completions", "responses"})


def _request(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: a JSON object with 'prompt' or 'messages'")
    if isinstance(item.get("prompt"), str) and item["prompt"].strip():
        return {"messages": [{"role": "user", "content": item["prompt"]}]}
    messages = item.get("messages")
    if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
        return {"messages": messages_of({"messages": messages})}
    raise ValueError(f"{where}: needs a non-empty 'prompt' string or a 'messages' list")


def load_prompts(path: Path) -> list[Prompt]:
    """Every prompt of the file, in order, each once (a repeated key is an error naming both lines)."""
    prompts: list[Prompt] = []
    lines: dict[str, int] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"--prompts {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"--prompts {path}, line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON ({exc.msg})") from None
        request = _request(item, where)
        given = item.get("id")
        key = f"id:{given}" if given is not None else f"sha:{prompt_id(request)}"
        if key in lines:
            raise ValueError(f"{where}: the same prompt as line {lines[key]} ({key})")
        lines[key] = number
        prompts.append(Prompt(key=key, request=request, request_id=str(given or key)))
    if not prompts:
        raise ValueError(f"--prompts {path}: no prompts")
    return prompts


async def recorded_prompts(
    client: Any, stream: str, tenants: tuple[str, ...], limit: int | None, chunk: int = 500
) -> AsyncIterator[Prompt]:
    """The prompts of recorded chat completions in the event stream, oldest first, each conversation once
    (sampled candidates and other endpoints left out); only ``tenants``' when given."""
    seen: set[str] = set()
    start = "-"
    while limit is None or len(seen) < limit:
        entries = await client.xrange(stream, min=start, max="+", count=chunk)
        for _, fields in entries:
            prompt = _recorded(fields, tenants)
            if prompt is not None and prompt.key not in seen:
                seen.add(prompt.key)
                yield prompt
                if limit is not None and len(seen) >= limit:
                    return
        if len(entries) < chunk:
            return
        start = "(" + (entries[-1][0].decode() if isinstance(entries[-1][0], bytes) else entries[-1][0])


def _recorded(fields: dict[bytes, bytes], tenants: tuple[str, ...]) -> Prompt | None:
    if fields.get(b"kind") != b"completion":
        return None
    try:
        event = decode_event(fields.get(b"event", b""))
    except msgspec.DecodeError:
        return None  # the sync's collector reports undecodable events; here they are only skipped
    if (
        event.candidate_of is not None
        or event.endpoint not in CONVERSATIONS
        or not event.request.get("messages")
    ):
        return None
    if tenants and event.tenant not in tenants:
        return None
    request = {"messages": messages_of(event.request)}
    return Prompt(key=f"sha:{prompt_id(request)}", request=request, request_id=event.id, tenant=event.tenant)
