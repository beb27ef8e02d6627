"""End to end, with every part real: the openai SDK → the gateway → llama.cpp; events in Redis;
`hhh feedback sync` pushes ranking tasks to a real Label Studio; annotations made through Label Studio's
API come back through the webhook, and through the reconciling poll while the webhook is down."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import yaml
from label_studio_sdk import LabelStudio

from feedback.labelstudio.settings import SECRET_HEADER
from feedback.labelstudio.tasks import letters_to_ids
from feedback.ranking import AnnotationRecord, RankingTask
from gateway.relay.embedded_llm import free_port
from tests.support.labelstudio_server import LabelStudioServer
from tests.support.ranking_results import bucket_ranking
from tests.support.redis_server import redis_server
from tests.support.servers import LLAMA_ALIAS, gateway_process

SECRET = "a-shared-secret-of-some-length"
PROJECT = "e2e rankings"
QUESTIONS = ["Name a colour.", "Name a fruit.", "Name an animal."]


_ranking = bucket_ranking


def _candidate_ids(client: redis.Redis, task_key: str) -> dict[str, str]:
    """What the gateway maps each letter shown to annotators back to."""
    import msgspec

    stored = msgspec.json.decode(client.get(f"hhh:fb:task:{task_key}"), type=RankingTask)  # type: ignore[arg-type]
    return letters_to_ids(stored)


def _sync(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "feedback", "sync", "--config", str(config), *extra],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_for(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def _stored(client: redis.Redis, task_key: str) -> list[AnnotationRecord]:
    import msgspec

    raw = client.hgetall(f"hhh:fb:ann:{task_key}")
    return [msgspec.json.decode(v, type=AnnotationRecord) for v in raw.values()]


@pytest.fixture
def setup(
    labelstudio: LabelStudioServer, llama_url: str, tmp_path: Path
) -> Iterator[tuple[Path, str, redis.Redis, int]]:
    with redis_server(tmp_path) as redis_url:
        port = free_port()
        config = {
            "data_dir": str(tmp_path / "data"),
            "upstreams": [{"name": "llama", "url": llama_url, "supports_n": False}],
            "redis": {"url": redis_url},
            "feedback": {
                "labelstudio": {
                    "url": labelstudio.url,
                    "api_key": "${TEST_LABEL_STUDIO_TOKEN}",  # secrets come from the environment
                    "project_title": PROJECT,
                    "webhook_url": f"http://127.0.0.1:{port}/v1/feedback/labelstudio",
                    "webhook_secret": SECRET,
                    "batch_size": 2,
                }
            },
        }
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        yield path, redis_url, redis.Redis.from_url(redis_url), port


def test_traffic_becomes_tasks_and_annotations_come_back_both_ways(
    setup: tuple[Path, str, redis.Redis, int], labelstudio: LabelStudioServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    config, _, store, port = setup
    monkeypatch.setenv("TEST_LABEL_STUDIO_TOKEN", labelstudio.token)
    ls = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)
    with gateway_process(config, tmp_path, port=port) as base_url:
        with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120) as client:
            for question in QUESTIONS:  # two answers each: a ranking task each
                client.chat.completions.create(
                    model=LLAMA_ALIAS, messages=[{"role": "user", "content": question}], max_tokens=12, n=2,
                    temperature=1.0,
                )  # fmt: skip
            client.chat.completions.create(  # one answer: nothing to rank
                model=LLAMA_ALIAS, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4
            )
        _wait_for(lambda: store.xlen("hhh:events") >= 4)

        first = _sync(config, "--flush")
        assert first.returncode == 0, first.stderr
        assert "tasks pushed: 3" in first.stdout, first.stdout
        assert "prompts without two answers: 1" in first.stdout

        project = next(p for p in ls.projects.list(title=PROJECT) if p.title == PROJECT)
        tasks = list(ls.tasks.list(project=project.id, fields="all"))
        assert len(tasks) == 3
        prompts = sorted(t.data["prompt"] for t in tasks)
        assert prompts == sorted(QUESTIONS)
        for task in tasks:
            assert [c["id"] for c in task.data["completions"]] == ["A", "B"]
            assert all(c["body"] and c["title"].startswith("Answer ") for c in task.data["completions"])
            assert task.data["conversation"][-1]["role"] == "user"
            assert task.data["hhh_layout"] == "buckets"
        hooks = ls.webhooks.list(project=str(project.id))
        assert [h.url for h in hooks] == [f"http://127.0.0.1:{port}/v1/feedback/labelstudio"]

        # An annotator ranks the first task: Label Studio calls the webhook, which stores the ranking.
        by_webhook = tasks[0]
        letters = [c["id"] for c in by_webhook.data["completions"]]
        key = by_webhook.data["hhh_task_key"]
        ids = [_candidate_ids(store, key)[letter] for letter in letters]  # the gateway's own ids
        made = ls.annotations.create(id=by_webhook.id, result=_ranking([letters[1], letters[0]]))
        stored = _wait_for(lambda: _stored(store, key))
        assert [(r.annotation_id, r.places) for r in stored] == [(made.id, [[ids[1]], [ids[0]]])]
        assert stored[0].annotator == "annotator@example.com" or stored[0].annotator.isdigit()

        # An annotation deleted in Label Studio is forgotten (ANNOTATIONS_DELETED), and one made again
        # is taken again.
        ls.annotations.delete(id=made.id)
        assert _wait_for(lambda: not _stored(store, key))
        made = ls.annotations.create(id=by_webhook.id, result=_ranking([letters[1], letters[0]]))
        assert _wait_for(lambda: [r.annotation_id for r in _stored(store, key)] == [made.id])
        # An annotator changes their mind (ANNOTATION_UPDATED): the newer ranking replaces the older.
        ls.annotations.update(id=made.id, result=_ranking([letters[0], letters[1]]))
        assert _wait_for(lambda: [r.places for r in _stored(store, key)] == [[[ids[0]], [ids[1]]]])

        # Calls without the secret, or with garbage, are refused (401 / 400) and logged.
        hook_url = f"http://127.0.0.1:{port}/v1/feedback/labelstudio"
        anonymous = httpx.post(hook_url, json={"action": "ANNOTATION_CREATED"})
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "invalid_webhook_secret"
        garbage = httpx.post(hook_url, content=b"{not json", headers={SECRET_HEADER: SECRET})
        assert garbage.status_code == 400
        assert garbage.json()["error"]["type"] == "invalid_request_error"
        shapeless = httpx.post(
            hook_url, json={"action": "ANNOTATION_CREATED"}, headers={SECRET_HEADER: SECRET}
        )
        assert shapeless.status_code == 400
    log = next(tmp_path.glob("gateway-*.log")).read_text()
    assert "webhook call from 127.0.0.1 refused" in log
    assert "malformed webhook call" in log

    # The gateway is gone, so the webhook is down: two more annotations, one of them invalid.
    by_poll, invalid = tasks[1], tasks[2]
    poll_letters = [c["id"] for c in by_poll.data["completions"]]
    poll_ids = [_candidate_ids(store, by_poll.data["hhh_task_key"])[letter] for letter in poll_letters]
    ls.annotations.create(id=by_poll.id, result=_ranking(poll_letters))
    ls.annotations.create(id=invalid.id, result=_ranking(["made-up", "ids"]))
    assert not _stored(store, by_poll.data["hhh_task_key"])

    second = _sync(config)
    assert second.returncode == 0, second.stderr
    assert "tasks pushed: 0" in second.stdout
    assert "1 new" in second.stdout, second.stdout
    assert "1 rejected" in second.stdout, second.stdout
    assert [r.places for r in _stored(store, by_poll.data["hhh_task_key"])] == [[[i] for i in poll_ids]]
    assert not _stored(store, invalid.data["hhh_task_key"])
    rejected = json.loads(store.lindex("hhh:fb:rejected", 0))  # type: ignore[arg-type]
    assert "every candidate once" in rejected["reason"]

    # Run again: nothing new anywhere, nothing counted twice.
    third = _sync(config)
    assert third.returncode == 0, third.stderr
    assert "tasks pushed: 0" in third.stdout
    assert "0 new" in third.stdout
    assert "0 rejected" in third.stdout
    assert len(list(ls.tasks.list(project=project.id))) == 3
    # What the annotators said is now a dataset: two rankings of two answers, a pair each.
    exported = subprocess.run(
        [sys.executable, "-m", "gateway", "feedback", "export", "--config", str(config), "--out",
         str(tmp_path / "dataset"), "--format", "trl-conversational", "--test-fraction", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert "exported 2 pairs (train 2)" in exported.stdout
    totals = {k.decode(): int(v) for k, v in store.hgetall("hhh:fb:stats").items()}  # type: ignore[union-attr]
    assert totals["pushed"] == 3
    assert totals["received"] == 3  # the one deleted and made again counts twice
    assert totals["deleted"] == 1
    assert totals["updated"] == 1
    assert totals["rejected"] == 1


async def test_the_gateway_can_run_the_sync_itself(labelstudio: LabelStudioServer, tmp_path: Path) -> None:
    """``run_in_gateway``: one process records, samples extra candidates, pushes tasks and polls, with
    metrics. The sampled set goes out as soon as it is whole: settle_s is an hour, and is not waited."""
    from litestar.testing import AsyncTestClient

    from feedback.labelstudio.settings import LabelStudioSettings
    from gateway.app import create_app
    from gateway.settings import FeedbackSettings, RedisSettings, SamplingSettings, Settings, UpstreamSettings
    from guards.policy import Policy, PolicyBook
    from tests.support.fake_upstream import FakeUpstream

    title = "in-gateway rankings"
    with redis_server(tmp_path) as redis_url:
        settings = Settings(
            data_dir=str(tmp_path / "data"),
            upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
            redis=RedisSettings(url=redis_url),
            guards={},
            policies=PolicyBook(default=Policy()),  # no guards: the sync is what is tested
            feedback=FeedbackSettings(
                sampling=SamplingSettings(fraction=1.0, temperatures=[0.3, 1.1]),
                labelstudio=LabelStudioSettings(
                    url=labelstudio.url, api_key=labelstudio.token, project_title=title, run_in_gateway=True,
                    settle_s=3600, poll_interval_s=0.5,
                ),
            ),
        )  # fmt: skip
        app = create_app(settings, upstream_transport=FakeUpstream().transport(), guards={})
        ls = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)
        async with AsyncTestClient(app) as client:
            body = {"model": "fake-model", "messages": [{"role": "user", "content": "One, please."}]}
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200

            def tasks() -> list[Any]:
                projects = [p for p in ls.projects.list(title=title) if p.title == title]
                return list(ls.tasks.list(project=projects[0].id, fields="all")) if projects else []

            deadline = time.monotonic() + 30
            while not tasks() and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
            [task] = tasks()
            titles = sorted(c["title"] for c in task.data["completions"])
            assert titles == ["Answer A", "Answer B", "Answer C"]  # no origin, no badge: no guard fired
            metrics = (await client.get("/metrics")).text
    assert "hhh_labelstudio_tasks_pushed_total 1.0" in metrics


async def test_a_personal_access_token_works_as_well_as_a_legacy_one(labelstudio: LabelStudioServer) -> None:
    """Label Studio's default token kind is a JWT personal access token; the SDK refreshes it."""
    from feedback.labelstudio.client import LabelStudioProject
    from feedback.labelstudio.settings import LabelStudioSettings

    async with httpx.AsyncClient(headers={"Authorization": f"Token {labelstudio.token}"}) as client:
        made = await client.post(f"{labelstudio.url}/api/token/")
    assert made.status_code in (200, 201), made.text
    settings = LabelStudioSettings(
        url=labelstudio.url, api_key=made.json()["token"], project_title="pat rankings"
    )
    async with LabelStudioProject(settings) as api:
        project = await api.ensure_project()
        task = {
            "prompt": "p",
            "completions": [{"id": "a", "title": "t", "body": "x"}],
            "conversation": [{"role": "user", "content": "p"}],
            "hhh_task_key": "pat-1",
        }
        [task_id] = await api.import_tasks(project, [task])
        assert await api.find_tasks(project, ["pat-1"]) == {"pat-1": task_id}


def test_the_watch_worker_pushes_serves_metrics_and_stops_cleanly(
    labelstudio: LabelStudioServer, tmp_path: Path
) -> None:
    import signal

    from feedback.events import CompletionEvent, encode_event

    with redis_server(tmp_path) as redis_url:
        store = redis.Redis.from_url(redis_url)
        event = CompletionEvent(
            id="w-1", completion_id="c-w-1", created=time.time(), tenant="t", model="m",
            endpoint="chat.completions", stream=False,
            request={"messages": [{"role": "user", "content": "Two?"}]},
            choices=[{"index": i, "message": {"role": "assistant", "content": f"answer {i}"}}
                     for i in range(2)],
        )  # fmt: skip
        store.xadd("hhh:events", {"kind": "completion", "event": encode_event(event)})
        config = tmp_path / "gateway.yaml"
        settings = {"url": labelstudio.url, "api_key": labelstudio.token, "project_title": "watch rankings",
                    "settle_s": 0, "poll_interval_s": 0.5}  # fmt: skip
        config.write_text(
            yaml.safe_dump({"redis": {"url": redis_url}, "feedback": {"labelstudio": settings}})
        )
        port = free_port()
        worker = subprocess.Popen(
            [sys.executable, "-m", "gateway", "feedback", "sync", "--config", str(config), "--watch",
             "--metrics-port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:

            def pushed() -> bool:
                try:
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                except httpx.HTTPError:
                    return False
                return "hhh_labelstudio_tasks_pushed_total 1.0" in text

            assert _wait_for(pushed, timeout=60)
            worker.send_signal(signal.SIGTERM)
            _, errors = worker.communicate(timeout=30)
        finally:
            worker.kill()
        assert worker.returncode == 0, errors
        assert "sync round: events collected: 1; tasks pushed: 1" in errors
        assert store.get("hhh:fb:sync-lock") is None  # released for the next worker
