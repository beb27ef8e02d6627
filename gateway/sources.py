"""The sources a request's answer should rest on, as a plain OpenAI client can supply them:

- an extension field, ``"sources": [{"id", "title", "text", "url"}, ...]`` (removed before the upstream);
- ``tool`` messages (retrieval results), each a source with its ``tool_call_id`` as id;
- ``<document id="..." title="..." url="...">text</document>`` blocks in system or user messages.

Citation markers resolve against them in this order: ``[1]`` is the first source listed.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from gateway.errors import InvalidRequest
from guards.verdict import Source

REQUEST_FIELD = "sources"
_DOCUMENT = re.compile(r"<document\b([^>]*)>(.*?)</document>", re.DOTALL | re.IGNORECASE)
_ATTRIBUTE = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


class _RequestSource(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    id: str | None = None
    title: str = ""
    url: str = ""


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def request_sources(raw: dict[str, Any]) -> list[Source]:
    """Every source of a chat request (and the extension field removed from ``raw``)."""
    sources: list[Source] = []
    supplied = raw.pop(REQUEST_FIELD, None)
    if supplied is not None:
        try:
            items = msgspec.convert(supplied, list[_RequestSource])
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).rpartition(" - at `")
            param = "sources" + where.rstrip("`").removeprefix("$")
            raise InvalidRequest(f"Invalid value for '{param}': {message or exc}", param=param) from None
        for index, item in enumerate(items):
            sources.append(Source(item.id or str(index + 1), item.text, item.title, item.url))
    for index, message in enumerate(raw.get("messages") or ()):
        if not isinstance(message, dict):
            continue
        text = _message_text(message)
        if message.get("role") == "tool" and text:
            sources.append(Source(str(message.get("tool_call_id") or f"tool-{index}"), text))
        for found in _DOCUMENT.finditer(text):
            attributes = dict(_ATTRIBUTE.findall(found.group(1)))
            source_id = attributes.get("id") or f"doc-{len(sources) + 1}"
            sources.append(
                Source(
                    source_id, found.group(2).strip(), attributes.get("title", ""), attributes.get("url", "")
                )
            )
    return sources
