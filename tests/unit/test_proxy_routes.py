"""The gateway in front of a fake upstream: wire format, routing, pass-through and n."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.support.fake_upstream import FakeUpstream
from tests.unit.conftest import UPSTREAM_SECRET

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}]}


async def test_chat_completion_is_relayed(client: AsyncTestClient[Any], fake_upstream: FakeUpstream) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake."
    assert fake_upstream.requests[-1].url == "http://fake.test/v1/chat/completions"


async def test_unknown_fields_reach_the_upstream_untouched(
    client: AsyncTestClient[Any], fake_upstream: FakeUpstream
) -> None:
    extra = {
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "seed": 7,
        "stop": ["\n"],
        "vendor_specific": {"x": [1, 2]},
    }
    await client.post("/v1/chat/completions", json={**CHAT, **extra})
    assert fake_upstream.bodies[-1] == {**CHAT, **extra}


async def test_the_upstream_key_replaces_the_gateway_key(
    client: AsyncTestClient[Any], fake_upstream: FakeUpstream
) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT)
    sent = fake_upstream.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert UPSTREAM_SECRET not in response.text
    assert all(UPSTREAM_SECRET not in value for value in response.headers.values())


async def test_every_response_has_request_id_and_overhead(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    assert float(response.headers["x-hhh-overhead-ms"]) >= 0
    for path in ("/nowhere", "/v1/models", "/health"):
        assert (await client.get(path)).headers["x-request-id"]


async def test_request_id_is_forwarded_upstream(
    client: AsyncTestClient[Any], fake_upstream: FakeUpstream
) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert fake_upstream.requests[-1].headers["x-request-id"] == response.headers["x-request-id"]


async def test_models_lists_the_union_of_upstreams(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/v1/models")
    cards = {card["id"]: card["owned_by"] for card in response.json()["data"]}
    assert cards["fake-model"] == "fake"  # discovered from the upstream's own /models
    assert cards["second-model"] == "second"  # configured
    assert response.json()["object"] == "list"
    assert (await client.get("/v1/models/second-model")).json()["id"] == "second-model"


async def test_requests_are_routed_by_model(
    client: AsyncTestClient[Any], fake_upstream: FakeUpstream
) -> None:
    before = len(fake_upstream.requests)
    response = await client.post("/v1/chat/completions", json={**CHAT, "model": "second-model"})
    # second.test is served by the same fake transport; the URL shows the routing.
    assert response.status_code == 200
    assert fake_upstream.requests[before].url.host == "second.test"


async def test_n_passes_through_to_an_upstream_that_supports_it(
    client: AsyncTestClient[Any], fake_upstream: FakeUpstream
) -> None:
    response = await client.post("/v1/chat/completions", json={**CHAT, "n": 3})
    assert [c["index"] for c in response.json()["choices"]] == [0, 1, 2]
    assert [body["n"] for body in fake_upstream.bodies] == [3]


async def test_n_is_emulated_for_an_upstream_that_ignores_it(
    client: AsyncTestClient[Any], fake_upstream: FakeUpstream
) -> None:
    response = await client.post("/v1/chat/completions", json={**CHAT, "model": "fake-no-n", "n": 3})
    body = response.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["usage"]["completion_tokens"] == 6  # three answers of two tokens
    assert body["usage"]["prompt_tokens"] == 5  # the prompt is read once
    # Learned: the next n request goes straight to n copies of n=1.
    fake_upstream.bodies.clear()
    await client.post("/v1/chat/completions", json={**CHAT, "model": "fake-no-n", "n": 2})
    assert [b["n"] for b in fake_upstream.bodies] == [1, 1]


async def test_completions_and_embeddings(client: AsyncTestClient[Any], fake_upstream: FakeUpstream) -> None:
    response = await client.post("/v1/completions", json={"model": "fake-model", "prompt": "Once"})
    assert response.status_code == 200
    assert fake_upstream.requests[-1].url.path == "/v1/completions"
    response = await client.post("/v1/embeddings", json={"model": "fake-model", "input": ["a", "b"]})
    assert response.json()["data"][0]["embedding"] == [0.1, 0.2]
    assert fake_upstream.requests[-1].url.path == "/v1/embeddings"


async def test_health_ready_and_metrics(client: AsyncTestClient[Any]) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["upstreams"] == {"fake": "ok", "second": "ok", "llamalike": "ok"}
    await client.post("/v1/chat/completions", json=CHAT)
    metrics = (await client.get("/metrics")).text
    assert 'hhh_requests_total{model="fake-model",route="/v1/chat/completions",status="200"} 1.0' in metrics
    assert "hhh_gateway_overhead_seconds_bucket" in metrics
    assert 'hhh_upstream_latency_seconds_count{upstream="fake"}' in metrics
