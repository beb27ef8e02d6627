"""Scale-out as deployed: two gateway replicas (``hhh serve`` processes) on one real Redis, in front of the
socket stub, with a real Label Studio. Traffic through both lands in the one event stream; one replica
killed under load leaves the other serving; the sync lock lets exactly one ``hhh feedback sync`` run, so
each prompt becomes one task however many syncs are started; and the export counts every pair once.
(Rate limits shared by replicas: tests/security/test_rate_limit_replica_bypass.py.)"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
import yaml
from label_studio_sdk import LabelStudio

from feedback.events import decode_event
from tests.support.feedback_servers import gateway_subprocess
from tests.support.labelstudio_server import LabelStudioServer
from tests.support.ranking_results import bucket_ranking
from tests.support.redis_server import redis_server

PROJECT = "replica rankings"
# Two prompts through each replica; n=2, so each is a ranking task of two different answers.
PROMPTS = {0: ["Name a colour.", "Name a fruit."], 1: ["Name a tree.", "Name a river."]}
BUSY = "another `hhh feedback sync` is running"


class Replicas:
    def __init__(
        self, urls: list[str], processes: list[subprocess.Popen[bytes]], config: Path, redis_url: str
    ) -> None:
        self.urls = urls
        self.processes = processes
        self.config = config
        self.redis = redis.Redis.from_url(redis_url)

    def sdk(self, index: int) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.urls[index], api_key="unused", max_retries=0, timeout=30)


@pytest.fixture
def replicas(tmp_path: Path, stub: tuple[str, object], labelstudio: LabelStudioServer) -> Iterator[Replicas]:
    stub_url, _ = stub
    with redis_server(tmp_path) as redis_url, ExitStack() as stack:
        config = {
            "data_dir": str(tmp_path / "data"),
            "redis": {"url": redis_url},
            "guards": {},
            "policies": {"default": {}},
            "upstreams": [{"name": "stub", "url": stub_url}],
            "feedback": {
                "record": True,
                "labelstudio": {
                    "url": labelstudio.url,
                    "api_key": labelstudio.token,
                    "project_title": PROJECT,
                    "settle_s": 0,
                },
            },
        }
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        started = []
        for index in (0, 1):
            logs = tmp_path / f"replica-{index}"
            logs.mkdir()
            started.append(stack.enter_context(gateway_subprocess(path, logs)))
        yield Replicas([url for url, _ in started], [p for _, p in started], path, redis_url)


def _sync(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "feedback", "sync", "--config", str(config), "--flush"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def _recorded_prompts(store: redis.Redis) -> list[str]:
    events = [decode_event(fields[b"event"]) for _, fields in store.xrange("hhh:events")]
    return sorted(str(e.request["messages"][-1]["content"]) for e in events)


def test_replicas_record_into_one_stream_survive_a_lost_peer_and_sync_each_task_once(
    replicas: Replicas, labelstudio: LabelStudioServer, tmp_path: Path
) -> None:
    # Traffic through both replicas: every event reaches the one stream.
    for replica, prompts in PROMPTS.items():
        with replicas.sdk(replica) as client:
            for prompt in prompts:
                answer = client.chat.completions.create(
                    model="stub-best-of-n", messages=[{"role": "user", "content": prompt}], n=2
                )
                assert answer.choices[0].message.content != answer.choices[1].message.content
    everything = sorted(p for prompts in PROMPTS.values() for p in prompts)
    assert _wait_for(lambda: _recorded_prompts(replicas.redis) == everything), _recorded_prompts(
        replicas.redis
    )

    _one_replica_killed_under_load_leaves_the_other_serving(replicas)

    # The sync lock: while one sync holds it, another refuses to run and makes nothing.
    replicas.redis.set("hhh:fb:sync-lock", "held-by-a-running-sync", px=60_000)
    refused = _sync(replicas.config)
    _, errors = refused.communicate(timeout=300)
    assert refused.returncode == 1
    assert BUSY in errors
    ls = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)
    assert not [p for p in ls.projects.list(title=PROJECT) if p.title == PROJECT]  # not even a project
    replicas.redis.delete("hhh:fb:sync-lock")

    # Two syncs started together: between them, each prompt becomes exactly one task.
    racing = [_sync(replicas.config) for _ in range(2)]
    outcomes = [(*sync.communicate(timeout=300), sync.returncode) for sync in racing]
    pushed = 0
    for out, errors, code in outcomes:
        assert code == 0 or (code == 1 and BUSY in errors), errors
        if code == 0:
            pushed += int(re.search(r"tasks pushed: (\d+)", out).group(1))  # type: ignore[union-attr]
    assert pushed == len(everything)
    project = next(p for p in ls.projects.list(title=PROJECT) if p.title == PROJECT)
    tasks = list(ls.tasks.list(project=project.id, fields="all"))
    # The data manager's prompt column is the last user turn (the labelling view shows every turn).
    assert sorted(t.data["prompt"] for t in tasks) == sorted(everything)

    # Every task ranked once; the export makes one pair of each ranking of two, none twice.
    for task in tasks:
        order = [c["id"] for c in task.data["completions"]]
        assert len(order) == 2
        ls.annotations.create(id=task.id, result=bucket_ranking(order))
    collect = _sync(replicas.config)
    out, errors = collect.communicate(timeout=300)
    assert collect.returncode == 0, errors
    assert f"{len(tasks)} new" in out, out
    exported = subprocess.run(
        [sys.executable, "-m", "gateway", "feedback", "export", "--config", str(replicas.config), "--out",
         str(tmp_path / "dataset"), "--format", "trl-conversational", "--test-fraction", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert f"exported {len(tasks)} pairs (train {len(tasks)})" in exported.stdout
    dataset = tmp_path / "dataset"
    rows = [json.loads(line) for f in (dataset / "jsonl").glob("*.jsonl") for line in f.open()]
    assert len(rows) == len(tasks)
    assert len({json.dumps(row["prompt"]) for row in rows}) == len(tasks)  # one pair per prompt
    meta = [json.loads(line) for f in (dataset / "meta").glob("*.jsonl") for line in f.open()]
    assert len({row["request_id"] for row in meta}) == len(tasks)


def _one_replica_killed_under_load_leaves_the_other_serving(replicas: Replicas) -> None:
    """Clients of replica 1 keep going while replica 0 is killed (SIGKILL: no drain at all)."""
    served_by_survivor: list[float] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        with replicas.sdk(1) as client:
            while not stop.is_set():
                try:
                    client.chat.completions.create(
                        model="stub-echo", messages=[{"role": "user", "content": "steady traffic"}]
                    )
                    served_by_survivor.append(time.monotonic())
                except openai.OpenAIError as exc:
                    failures.append(exc)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        with replicas.sdk(0) as doomed:
            for _ in range(5):
                doomed.chat.completions.create(
                    model="stub-echo", messages=[{"role": "user", "content": "steady traffic"}]
                )
            replicas.processes[0].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            replicas.processes[0].wait(timeout=30)
            with pytest.raises(openai.APIConnectionError):
                doomed.chat.completions.create(
                    model="stub-echo", messages=[{"role": "user", "content": "steady traffic"}]
                )
        assert _wait_for(lambda: sum(t > killed_at for t in served_by_survivor) >= 20)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not failures
