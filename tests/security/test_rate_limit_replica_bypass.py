"""Threat: spreading requests over gateway replicas multiplies a limit that each replica keeps alone.

Two real gateway processes (``hhh serve``) share one real Redis, in front of the socket stub; the
official openai SDK (``max_retries=0``) sends requests to each in turn. They must be limited as one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
import redis
import yaml

from gateway.auth import hash_key
from tests.support.redis_server import redis_server
from tests.support.servers import gateway_process

KEY = "hhh-replicated-key"
STREAM_KEY = "hhh-one-stream-key"
MESSAGES = [{"role": "user", "content": "hello replicas"}]


class Replicas:
    def __init__(self, urls: list[str], redis_url: str) -> None:
        self.urls = urls
        self.redis = redis.Redis.from_url(redis_url)

    def sdk(self, index: int, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.urls[index % 2], api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, stub: tuple[str, object]) -> Iterator[Replicas]:
    stub_url, _ = stub
    directory = tmp_path_factory.mktemp("replicas")
    with redis_server(directory) as redis_url:
        config = {
            "data_dir": str(directory / "data"),
            "redis": {"url": redis_url},
            "feedback": {"record": False},
            "guards": {},
            "policies": {"default": {}},
            "upstreams": [{"name": "stub", "url": stub_url}],
            "auth": {
                "keys": [
                    {"tenant": "replicated", "sha256": hash_key(KEY)},
                    {"tenant": "streams", "sha256": hash_key(STREAM_KEY)},
                ]
            },
            "rate_limits": {
                "tenants": {
                    "replicated": {"requests_per_minute": 6},
                    "streams": {"max_concurrent": 1},
                }
            },
        }
        path = directory / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        with gateway_process(path, directory) as first, gateway_process(path, directory) as second:
            yield Replicas([first, second], redis_url)


def test_requests_spread_over_two_replicas_share_one_per_minute_limit(replicas: Replicas) -> None:
    outcomes: list[tuple[int, str]] = []
    refusals: list[openai.RateLimitError] = []
    for index in range(10):
        with replicas.sdk(index) as sdk:
            try:
                raw = sdk.chat.completions.with_raw_response.create(model="stub-echo", messages=MESSAGES)
                outcomes.append((200, raw.headers["x-ratelimit-remaining-requests"]))
            except openai.RateLimitError as refused:
                refusals.append(refused)
                outcomes.append((429, refused.response.headers["x-ratelimit-remaining-requests"]))
    # Alone, each replica would have admitted all five of its requests.
    assert outcomes == [(200, str(left)) for left in range(5, -1, -1)] + [(429, "0")] * 4
    for refused in refusals:
        assert refused.code == "rate_limit_exceeded"
        assert isinstance(refused.body, dict)
        assert refused.body["type"] == "requests"
        assert int(refused.response.headers["retry-after"]) >= 1


def test_a_stream_held_on_one_replica_takes_the_slot_on_the_other_until_its_client_leaves(
    replicas: Replicas,
) -> None:
    slots = "hhh:ratelimit:{streams}:tenant:slots"
    with replicas.sdk(0, STREAM_KEY) as first, replicas.sdk(1, STREAM_KEY) as second:
        stream = first.chat.completions.create(model="stub-slow-stream", messages=MESSAGES, stream=True)
        assert next(iter(stream)).choices[0].delta.content == "wave "
        with pytest.raises(openai.RateLimitError) as refused:
            second.chat.completions.create(model="stub-echo", messages=MESSAGES)
        assert "concurrent requests" in refused.value.message
        stream.close()  # the client leaves mid-stream
        deadline = time.monotonic() + 30
        while replicas.redis.zcard(slots) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert replicas.redis.zcard(slots) == 0
        answer = second.chat.completions.create(model="stub-echo", messages=MESSAGES)
        assert answer.choices[0].message.content == "hello replicas"
