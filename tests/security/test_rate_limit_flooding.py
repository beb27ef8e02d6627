"""Threat: one client floods the gateway (requests, tokens, or requests held open) and starves the others.

Rate limits per tenant and key, on a real Redis, in front of a fake upstream. The windows and slot
expiry are checked on the limiter itself with a clock the test moves, so no test waits on time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.rate_limit.limiter import RedisRateLimiter, Subject
from gateway.rate_limit.settings import RateLimit
from gateway.relay.embedded_llm import free_port
from gateway.settings import ConfigError, Settings, settings_from_mapping
from tests.support.rate_limit_upstream import HoldingUpstream, serving
from tests.support.redis_server import redis_server

KEY = "hhh-acme-key"
PER_KEY = "hhh-acme-limited-key"  # a second key of the same tenant, with a limit of its own
OTHER = "hhh-globex-key"
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}]}
TENANT_SLOTS = "hhh:ratelimit:{acme}:tenant:slots"
TENANT_COUNTERS = "hhh:ratelimit:{acme}:tenant"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    away_from_a_window_edge(client)
    yield client
    client.close()


def away_from_a_window_edge(client: redis.Redis, margin_s: float = 5.0) -> None:
    """Start a test well inside a minute of Redis's clock (the limiter's). Just after a minute begins, the
    sliding window weighs the minute before at a little under 1, so 3 requests count as 2.99: a test
    that spends its budget across that edge would see one more admitted than it expects."""
    seconds, micros = client.time()
    into_minute = seconds % 60 + micros / 1e6
    if into_minute > 60 - margin_s:
        time.sleep(60 - into_minute + 0.1)


def config(redis_url: str, rate_limits: dict[str, Any], **extra: Any) -> Settings:
    return settings_from_mapping(
        {
            "redis": {"url": redis_url},
            "feedback": {"record": False},
            "guards": {},
            "policies": {"default": {}},
            "upstreams": [{"name": "fake", "url": "http://fake.test/v1"}],
            "auth": {
                "keys": [
                    {"tenant": "acme", "sha256": hash_key(KEY)},
                    {
                        "tenant": "acme",
                        "sha256": hash_key(PER_KEY),
                        "rate_limits": {"requests_per_minute": 1},
                    },
                    {"tenant": "globex", "sha256": hash_key(OTHER)},
                ]
            },
            "rate_limits": rate_limits,
            **extra,
        },
        environ={},
    )


@asynccontextmanager
async def gateway(
    settings: Settings, upstream: HoldingUpstream | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    upstream = upstream or HoldingUpstream()
    app = create_app(settings, upstream_transport=upstream.transport(), guards={})
    async with serving(app, KEY) as client:
        yield client


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)


def as_key(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_requests_beyond_the_per_minute_limit_get_429_in_openai_envelope(
    redis_url: str, store: redis.Redis
) -> None:
    upstream = HoldingUpstream()
    async with gateway(config(redis_url, {"default": {"requests_per_minute": 3}}), upstream) as client:
        answers = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0", "0"]
    assert {a.headers["x-ratelimit-limit-requests"] for a in answers} == {"3"}
    refused = answers[-1]
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "requests"
    assert error["param"] is None
    assert "requests per minute" in error["message"]
    assert "acme" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 120
    assert int(refused.headers["retry-after-ms"]) > 0
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert len(upstream.fake.bodies) == 3  # the refused request never reached the upstream


async def test_tenants_are_limited_apart_and_a_key_limit_adds_to_its_tenant(
    redis_url: str, store: redis.Redis
) -> None:
    async with gateway(config(redis_url, {"default": {"requests_per_minute": 3}})) as client:

        async def status(key: str) -> int:
            return (await client.post("/v1/chat/completions", json=CHAT, headers=as_key(key))).status_code

        assert await status(PER_KEY) == 200
        per_key = await client.post("/v1/chat/completions", json=CHAT, headers=as_key(PER_KEY))
        assert per_key.status_code == 429
        assert "this API key" in per_key.json()["error"]["message"]
        # The key's one request counts for its tenant too: acme has 2 of 3 left, globex all 3.
        assert [await status(KEY) for _ in range(3)] == [200, 200, 429]
        assert [await status(OTHER) for _ in range(3)] == [200, 200, 200]


async def test_a_bad_key_gets_401_and_spends_no_budget(redis_url: str, store: redis.Redis) -> None:
    async with gateway(config(redis_url, {"default": {"requests_per_minute": 1}})) as client:
        for _ in range(3):
            response = await client.post("/v1/chat/completions", json=CHAT, headers=as_key("hhh-wrong"))
            assert response.status_code == 401
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_the_token_budget_is_spent_by_reported_usage(redis_url: str, store: redis.Redis) -> None:
    async with gateway(config(redis_url, {"default": {"tokens_per_minute": 10}})) as client:
        # The fake reports 7 tokens an answer: the first two are admitted (0, then 7 < 10 used).
        answers = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(3)]
        metrics = (await client.get("/metrics")).text
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["x-ratelimit-remaining-tokens"] for a in answers] == ["10", "3", "0"]
    assert answers[-1].json()["error"]["type"] == "tokens"
    assert answers[-1].json()["error"]["code"] == "rate_limit_exceeded"
    assert 'hhh_rate_limit_rejections_total{kind="tokens",tenant="acme"} 1.0' in metrics
    assert store.hget(TENANT_COUNTERS, "tc") == "14"


async def test_streams_are_charged_their_usage_or_an_estimate(redis_url: str, store: redis.Redis) -> None:
    async with gateway(config(redis_url, {"default": {"tokens_per_minute": 1000}})) as client:
        # No usage chunk at all: the prompt "Hi" (1 token, estimated) and ten content chunks.
        stream = {**CHAT, "model": "no-usage", "stream": True}
        response = await client.post("/v1/chat/completions", json=stream)
        assert response.status_code == 200
        assert response.text.endswith("data: [DONE]\n\n")
        assert store.hget(TENANT_COUNTERS, "tc") == "11"
        # The upstream's own usage (9 tokens) when the client asked for it.
        stream = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        await client.post("/v1/chat/completions", json=stream)
        assert store.hget(TENANT_COUNTERS, "tc") == "20"


async def test_concurrent_requests_beyond_max_concurrent_are_refused_until_a_slot_frees(
    redis_url: str, store: redis.Redis
) -> None:
    upstream = HoldingUpstream()
    async with gateway(config(redis_url, {"default": {"max_concurrent": 2}}), upstream) as client:
        held = [
            asyncio.create_task(client.post("/v1/chat/completions", json={**CHAT, "model": "held"}))
            for _ in range(2)
        ]
        await until(lambda: upstream.held == 2)
        refused = await client.post("/v1/chat/completions", json=CHAT)
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "requests"
        assert "concurrent requests" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"
        assert store.zcard(TENANT_SLOTS) == 2
        upstream.release.set()
        assert [(await task).status_code for task in held] == [200, 200]
        assert store.zcard(TENANT_SLOTS) == 0
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_a_request_running_longer_than_the_slot_ttl_keeps_its_slot(
    redis_url: str, store: redis.Redis
) -> None:
    """Else a long stream's slot would expire under it and let more requests in than the limit."""
    upstream = HoldingUpstream()
    limits = {"default": {"max_concurrent": 1}, "slot_ttl_s": 3}
    async with gateway(config(redis_url, limits), upstream) as client:
        holder = asyncio.create_task(client.post("/v1/chat/completions", json={**CHAT, "model": "held"}))
        await until(lambda: upstream.held == 1)
        await asyncio.sleep(4.5)  # one and a half slot lifetimes: renewed (every 1 s) or gone
        refused = await client.post("/v1/chat/completions", json=CHAT)
        assert refused.status_code == 429
        upstream.release.set()
        assert (await holder).status_code == 200
        assert store.zcard(TENANT_SLOTS) == 0


async def test_a_slot_is_freed_when_the_upstream_fails(redis_url: str, store: redis.Redis) -> None:
    async with gateway(config(redis_url, {"default": {"max_concurrent": 1}})) as client:
        for model, stream in (("unreachable", False), ("timeout", False), ("plain-503", False),
                              ("broken-stream", True), ("unreachable", True)):  # fmt: skip
            response = await client.post(
                "/v1/chat/completions", json={**CHAT, "model": model, "stream": stream}
            )
            assert response.status_code in (200, 502, 503, 504), model
            assert store.zcard(TENANT_SLOTS) == 0, model
        malformed = await client.post("/v1/chat/completions", content=b"{not json")
        assert malformed.status_code == 400
        assert store.zcard(TENANT_SLOTS) == 0
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_a_slot_is_freed_when_a_streaming_client_disconnects(
    redis_url: str, store: redis.Redis
) -> None:
    upstream = HoldingUpstream()
    app = create_app(
        config(redis_url, {"default": {"max_concurrent": 1}}),
        upstream_transport=upstream.transport(),
        guards={},
    )
    async with serving(app, KEY) as client:
        left = asyncio.Event()
        first_frame = asyncio.Event()
        body = httpx.Request("POST", "/", json={**CHAT, "model": "endless-stream", "stream": True}).read()
        requests = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def receive() -> dict[str, Any]:
            message = next(requests, None)
            if message is not None:
                return message
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body", b"").startswith(b"data:"):
                first_frame.set()

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000), "server": ("test", 80),
            "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())],
        }  # fmt: skip
        call = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
        await asyncio.wait_for(first_frame.wait(), 30)
        assert store.zcard(TENANT_SLOTS) == 1
        left.set()  # the client goes away mid-stream
        await asyncio.wait_for(call, 30)
        await asyncio.wait_for(upstream.endless_closed.wait(), 30)
        assert store.zcard(TENANT_SLOTS) == 0
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


class Clock:
    def __init__(self, ms: float) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms


def limiter_at(client: Any, clock: Clock) -> RedisRateLimiter:
    return RedisRateLimiter(client, window_s=60, slot_ttl_s=30, clock=clock)


@pytest.fixture
async def async_store(redis_url: str, store: redis.Redis) -> AsyncIterator[Any]:
    import redis.asyncio

    client = redis.asyncio.from_url(redis_url)
    yield client
    await client.aclose()


async def test_the_sliding_window_allows_no_double_burst_at_a_window_edge(async_store: Any) -> None:
    clock = Clock(59_000)  # the last second of a window
    limiter = limiter_at(async_store, clock)
    subject = [Subject.of_tenant("acme", RateLimit(requests_per_minute=10))]
    assert all([(await limiter.admit(subject, f"a{i}")).admitted for i in range(10)])
    clock.ms = 60_001  # a fixed window would start again from 0 here and let 10 more through
    refused = await limiter.admit(subject, "b")
    assert not refused.admitted
    [refusal] = refused.refusals()
    assert refusal.kind == "requests"
    # One tenth of the previous window must age out (6 s into this one) before one more fits.
    assert refusal.retry_after_ms == 5_999
    clock.ms = 66_000
    assert (await limiter.admit(subject, "c")).admitted
    assert not (await limiter.admit(subject, "d")).admitted
    clock.ms = 180_000  # two windows later everything has aged out
    decision = await limiter.admit(subject, "e")
    assert decision.admitted
    assert decision.headers()["x-ratelimit-remaining-requests"] == "9"


async def test_slots_of_a_replica_that_died_expire(async_store: Any) -> None:
    clock = Clock(1_000_000)
    limiter = limiter_at(async_store, clock)
    subject = [Subject.of_tenant("acme", RateLimit(max_concurrent=1))]
    assert (await limiter.admit(subject, "dies")).admitted  # never finished, never renewed
    assert (await limiter.admit(subject, "kept")).admitted is False
    clock.ms += 30_001
    assert (await limiter.admit(subject, "kept")).admitted
    clock.ms += 20_000
    await limiter.renew(subject, "kept")  # a live replica renews its running requests
    clock.ms += 20_000
    assert not (await limiter.admit(subject, "other")).admitted
    await limiter.finish(subject, "kept", 0)
    assert (await limiter.admit(subject, "other")).admitted


def closed_port_settings(mode: str) -> Settings:
    return config(
        f"redis://127.0.0.1:{free_port()}/0", {"default": {"requests_per_minute": 1}, "on_redis_error": mode}
    )


async def test_redis_down_fails_open_by_default_with_a_metric() -> None:
    async with gateway(closed_port_settings("open")) as client:
        answers = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(3)]
        metrics = (await client.get("/metrics")).text
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert 'hhh_rate_limit_unavailable_total{decision="admitted"} 3.0' in metrics


async def test_redis_down_fails_closed_when_configured() -> None:
    async with gateway(closed_port_settings("closed")) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "rate_limiter_unavailable"
    assert response.headers["retry-after"] == "1"


async def test_the_openai_sdk_waits_retry_after_then_retries(
    redis_url: str, store: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = HoldingUpstream()
    waits: list[float] = []
    async with gateway(config(redis_url, {"default": {"max_concurrent": 1}}), upstream) as client:
        holder = asyncio.create_task(client.post("/v1/chat/completions", json={**CHAT, "model": "held"}))
        await until(lambda: upstream.held == 1)

        async def slot_frees_while_sdk_waits(seconds: float) -> None:
            waits.append(seconds)
            upstream.release.set()
            await holder

        monkeypatch.setattr("openai._base_client.anyio.sleep", slot_frees_while_sdk_waits)
        sdk = openai.AsyncOpenAI(
            base_url=f"{client.base_url}/v1", api_key=KEY, http_client=client, max_retries=2
        )
        answer = await sdk.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "Hi"}]
        )
    assert answer.choices[0].message.content == "Hello from the fake."
    assert waits == [1.0]  # the gateway's retry-after, not the SDK's own jittered backoff


@pytest.mark.parametrize(
    ("rate_limits", "key"),
    [
        ({"tenants": {"acme": {"requests_per_minute": 0}}}, "rate_limits.tenants.acme.requests_per_minute"),
        ({"tenants": {"acmee": {"requests_per_minute": 5}}}, "rate_limits.tenants.acmee"),
        ({"default": {"tokens_per_minute": "many"}}, "rate_limits.default.tokens_per_minute"),
        ({"default": {"max_concurent": 2}}, "rate_limits.default"),
        ({"on_redis_error": "maybe"}, "rate_limits.on_redis_error"),
    ],
)
def test_rate_limit_config_errors_name_the_key(rate_limits: dict[str, Any], key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        config("redis://127.0.0.1:1/0", rate_limits)
    assert key in str(error.value)
