"""The fingerprint index in Redis, for many gateway replicas: each loads it at start.

Keys under ``hhh:ip:<name>:``: ``segment:<n>`` (one immutable npz blob per indexing run) and
``manifest`` (JSON, written last, so a replica never sees a manifest that names a missing segment).
Location syntax: ``redis://host:port/db?name=<name>`` (``name`` defaults to ``default``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from guards.ip.index import FingerprintIndex, segment_bytes, segment_from_bytes


def split_location(location: str) -> tuple[str, str]:
    """The Redis URL and the index's name.

    >>> split_location("redis://127.0.0.1:6379/0?name=books")
    ('redis://127.0.0.1:6379/0', 'books')
    """
    parts = urlsplit(location)
    name = parse_qs(parts.query).get("name", ["default"])[0]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), name


def _prefix(name: str) -> str:
    return f"hhh:ip:{name}:"


async def save_to_redis(index: FingerprintIndex, client: Any, name: str) -> int:
    """Write new segments, then the manifest; returns how many segments were written."""
    prefix = _prefix(name)
    written = 0
    for number, segment in enumerate(index.segments):
        key = f"{prefix}segment:{number}"
        if await client.exists(key):
            continue  # immutable once written
        await client.set(key, segment_bytes(segment))
        written += 1
    await client.set(f"{prefix}manifest", json.dumps(index.manifest()).encode())
    return written


async def load_from_redis(client: Any, name: str) -> FingerprintIndex | None:
    prefix = _prefix(name)
    raw = await client.get(f"{prefix}manifest")
    if raw is None:
        return None
    manifest = json.loads(raw)
    segments = []
    for number in range(manifest["segments"]):
        blob = await client.get(f"{prefix}segment:{number}")
        if blob is None:
            raise ValueError(f"the index {name!r} in Redis names segment {number}, which is missing")
        segments.append(segment_from_bytes(blob))
    return FingerprintIndex.from_manifest(manifest, segments)
