"""The request limits do not refuse what is legitimate: brackets in strings are no nesting, and a
request within every limit is served as before (the attacks are in tests/security)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway import limits
from gateway.limits import json_depth
from tests.support.fake_upstream import FakeUpstream

BODIES = [
    (b'{"a": "[[[{{{", "b": [[1]], "c\\"[[[": "\\\\"}', 3),
    (b'["\\\\\\"[[[", [[]]]', 3),
    (b'[["\\\\\\\\", "]]]]"], {"k\\\\": {"\\\\\\"": []}}]', 4),
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64 * 1024])
def test_json_depth_counts_only_brackets_outside_strings_wherever_the_scan_cuts(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "_CHUNK", chunk)
    for body, depth in BODIES:
        assert json_depth(body) == depth == _parsed_depth(json.loads(body)), body


def _parsed_depth(value: Any) -> int:
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    return 0 if children is None else 1 + max(map(_parsed_depth, children), default=0)


async def test_brackets_inside_strings_are_not_nesting(
    client: AsyncTestClient,
    fake_upstream: FakeUpstream,  # type: ignore[type-arg]
) -> None:
    deep_looking = '"' + "[" * 5_000 + '\\"' + "{" * 100 + '"'
    body = (
        '{"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "metadata": '
        + deep_looking
        + "}"
    )
    response = await client.post(
        "/v1/chat/completions", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert fake_upstream.bodies[0]["metadata"].startswith("[[[")


async def test_content_parts_of_every_kind_still_pass(
    client: AsyncTestClient,
    fake_upstream: FakeUpstream,  # type: ignore[type-arg]
) -> None:
    parts = [{"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    body = {"model": "fake-model", "messages": [{"role": "user", "content": parts}]}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert fake_upstream.bodies[0]["messages"][0]["content"] == parts  # forwarded untouched
