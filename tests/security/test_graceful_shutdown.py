"""SIGTERM while a stream runs longer than the shutdown grace period (a deploy, a scale-down): the client
must get an error event and ``[DONE]``, not a stream cut off in silence, and the stream's event must reach
Redis, not the local spool (the writer stays up until the last stream has ended). SIGTERM while a stream
runs shorter than the grace period (the usual rollout): the stream finishes whole, while the draining
replica refuses new connections (so the orchestrator's readiness probe fails and the load balancer moves on).

Real parts: the gateway as a subprocess, a socket upstream that streams forever, and a real Redis."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import redis
import yaml

from feedback.events import decode_event
from feedback.spool import DiskSpool
from gateway.auth import hash_key
from tests.support.feedback_servers import (
    FINITE_MODEL,
    FINITE_TOKENS,
    SLOW_MODEL,
    gateway_subprocess,
    slow_stream_upstream,
)
from tests.support.redis_server import redis_server

KEY = "shutdown-test-key"
GRACE_S = 2.0


def _config(tmp_path: Path, upstream: str, redis_url: str, grace_s: float = GRACE_S) -> Path:
    config = {
        "data_dir": str(tmp_path / "data"),
        "server": {"shutdown_grace_s": grace_s},
        "auth": {"keys": [{"tenant": "t", "sha256": hash_key(KEY)}]},
        "upstreams": [{"name": "slow", "url": upstream}],
        "guards": {},
        "policies": {"default": {}},
        "redis": {"url": redis_url},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_sigterm_ends_a_long_stream_with_an_error_event_and_done_and_records_it_in_redis(
    tmp_path: Path,
) -> None:
    with slow_stream_upstream() as upstream, redis_server(tmp_path) as redis_url:
        with gateway_subprocess(_config(tmp_path, upstream, redis_url), tmp_path) as (url, process):
            payloads: list[str] = []
            body = {"model": SLOW_MODEL, "stream": True, "messages": [{"role": "user", "content": "go on"}]}
            headers = {"authorization": f"Bearer {KEY}"}
            with httpx.stream("POST", f"{url}/chat/completions", json=body, headers=headers, timeout=60) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        payloads.append(line.removeprefix("data: "))
                    if len(payloads) == 3:
                        process.send_signal(signal.SIGTERM)  # mid-stream
            # uvicorn re-raises the signal once it has shut down cleanly.
            assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        events = redis.Redis.from_url(redis_url).xrange("hhh:events")

    assert payloads[-1] == "[DONE]"
    error = json.loads(payloads[-2])["error"]
    assert error["code"] == "server_shutting_down"
    assert len(payloads) > 4  # it kept streaming through the grace period, then ended
    recorded = [decode_event(fields[b"event"]) for _, fields in events]
    assert len(recorded) == 1
    assert not recorded[0].complete
    assert recorded[0].choices[0]["message"]["content"].startswith(" token0 token1")
    assert DiskSpool(tmp_path / "data" / "spool").pending == 0


def _refused(url: str) -> bool:
    """No new connection gets through: the listening socket is closed."""
    try:
        httpx.get(url, timeout=2)
    except httpx.ConnectError:
        return True
    return False


def test_sigterm_lets_a_stream_inside_the_grace_period_finish_while_new_requests_are_refused(
    tmp_path: Path,
) -> None:
    with slow_stream_upstream() as upstream, redis_server(tmp_path) as redis_url:
        # A grace period far beyond the 3 s stream: nothing here may cut it.
        config = _config(tmp_path, upstream, redis_url, grace_s=60)
        with gateway_subprocess(config, tmp_path) as (url, process):
            base = url.removesuffix("/v1")
            assert httpx.get(f"{base}/ready", timeout=10).status_code == 200
            payloads: list[str] = []
            refused_while_streaming: list[bool] = []
            body = {"model": FINITE_MODEL, "stream": True, "messages": [{"role": "user", "content": "go on"}]}
            headers = {"authorization": f"Bearer {KEY}"}
            with httpx.stream("POST", f"{url}/chat/completions", json=body, headers=headers, timeout=60) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        payloads.append(line.removeprefix("data: "))
                    if len(payloads) == 3 and not refused_while_streaming:
                        process.send_signal(signal.SIGTERM)
                        # The listener closes once the server sees the signal; the stream goes on.
                        deadline = time.monotonic() + 20
                        while not _refused(f"{base}/ready") and time.monotonic() < deadline:
                            time.sleep(0.1)
                        refused_while_streaming.append(_refused(f"{base}/ready"))
                        refused_while_streaming.append(_refused(f"{url}/models"))
                        assert process.poll() is None  # draining, not dead
            assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        events = redis.Redis.from_url(redis_url).xrange("hhh:events")

    assert refused_while_streaming == [True, True]
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert all("error" not in chunk for chunk in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == "".join(f" token{n}" for n in range(FINITE_TOKENS))  # every token, none cut
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    recorded = [decode_event(fields[b"event"]) for _, fields in events]
    assert len(recorded) == 1
    assert recorded[0].complete
    assert DiskSpool(tmp_path / "data" / "spool").pending == 0
