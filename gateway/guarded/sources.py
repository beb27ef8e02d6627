"""The sources a request's answer should rest on, as a plain OpenAI client can supply them:

- an extension field, ``"sources": [{"id", "title", "text", "url"}, ...]`` (removed before the upstream);
- ``tool`` messages (retrieval results), each a source with its ``tool_call_id`` as id;
- ``<document id="..." title="..." url="...">text</document>`` blocks in system or user messages (an
  attribute value cannot hold ``<`` or ``>``).

Citation markers resolve against them in this order: ``[1]`` is the first source listed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from feedback.messages import message_text
from gateway.errors import InvalidRequest
from guards.documents import document_blocks
from guards.verdict import Source

REQUEST_FIELD = "sources"


class _RequestSource(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    id: str | None = None
    title: str = ""
    url: str = ""


def request_source_texts(raw: dict[str, Any]) -> list[str]:
    """The texts of the extension field, as far as it is well formed (for a request's size budget; the
    field is checked by ``request_sources``)."""
    supplied = raw.get(REQUEST_FIELD)
    if not isinstance(supplied, list):
        return []
    return [item["text"] for item in supplied if isinstance(item, dict) and isinstance(item.get("text"), str)]


def request_sources(raw: dict[str, Any]) -> list[Source]:
    """Every source of a chat request."""
    sources: list[Source] = []
    supplied = raw.get(REQUEST_FIELD)
    if supplied is not None:
        try:
            items = msgspec.convert(supplied, list[_RequestSource])
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).rpartition(" - at `")
            if not message:  # the field itself is wrong (not an array): msgspec names no path
                message, where = str(exc), "$"
            param = REQUEST_FIELD + where.rstrip("`").removeprefix("$")
            raise InvalidRequest(f"Invalid value for '{param}': {message}", param=param) from None
        for index, item in enumerate(items):
            sources.append(Source(item.id or str(index + 1), item.text, item.title, item.url))
    for index, message in enumerate(raw.get("messages") or ()):
        if not isinstance(message, dict):
            continue
        text = message_text(message)
        if message.get("role") == "tool" and text:
            sources.append(Source(str(message.get("tool_call_id") or f"tool-{index}"), text))
        for attributes, body in document_blocks(text):
            source_id = attributes.get("id") or f"doc-{len(sources) + 1}"
            sources.append(Source(source_id, body, attributes.get("title", ""), attributes.get("url", "")))
    return sources
