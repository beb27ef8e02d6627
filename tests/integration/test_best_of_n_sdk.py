"""Best-of-n through the official openai SDK against ``hhh serve``: a real reward model (all-MiniLM-L6-v2
with a politeness probe for a head, built in the test: ``tests.support.reward_models``) loaded by the
gateway at start-up, the default guards, the stub upstream's scripted answers of varying politeness, a
real Redis for the events. The polite answer is served, whole and streamed, each of the client's choices
the best of its own group; every candidate is recorded with its reward, becomes part of one ranking task,
and the export says how often an annotator agreed with the reward model."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import redis.asyncio
import yaml

from feedback.collector import EventCollector
from feedback.labelstudio.tasks import labelstudio_data
from feedback.ranking import AnnotationRecord, RankingTask, ranking_task
from feedback.store import FeedbackStore
from gateway.auth import hash_key
from tests.support.redis_server import redis_server
from tests.support.reward_models import build_polite_reward_model
from tests.support.servers import BEST_OF_N_ANSWERS, gateway_process

KEY = "hhh-best-of-n-key"
POLITE = BEST_OF_N_ANSWERS[2]
PROMPT = "Can you help me with my tax return?"


class Served:
    def __init__(self, url: str, config: Path, redis_url: str) -> None:
        self.url = url
        self.config = config
        self.redis_url = redis_url


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, stub: tuple[str, Any]) -> Iterator[Served]:
    stub_url, _ = stub
    root = tmp_path_factory.mktemp("best-of-n")
    model = build_polite_reward_model(root / "reward-model")
    with redis_server(root) as redis_url:
        config = {
            "data_dir": str(root / "data"),
            "redis": {"url": redis_url},
            "auth": {"keys": [{"tenant": "acme", "sha256": hash_key(KEY)}]},
            "upstreams": [{"name": "stub", "url": stub_url, "models": ["stub-best-of-n"]}],
            # The default guards both ways, and best-of-4 by the reward model.
            "policies": {"models": {"stub-best-of-n": {
                "input": [{"guard": "toxicity"}, {"guard": "pii", "action": "redact"}],
                "output": [{"guard": "toxicity"}, {"guard": "pii", "action": "redact"}],
                "best_of_n": {"n": 4, "reward_model": str(model), "temperature": 0.9},
            }}},
        }  # fmt: skip
        path = root / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        with gateway_process(path, root) as url:
            yield Served(url, path, redis_url)


@pytest.fixture
def client(served: Served) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=served.url, api_key=KEY, max_retries=0, timeout=60) as sdk:
        yield sdk


def _ask(client: openai.OpenAI, **extra: Any) -> Any:
    messages = [{"role": "user", "content": PROMPT}]
    return client.chat.completions.create(model="stub-best-of-n", messages=messages, **extra)  # type: ignore[arg-type]


def test_the_polite_answer_of_four_is_served_through_the_sdk(client: openai.OpenAI) -> None:
    answer = _ask(client)
    assert [choice.message.content for choice in answer.choices] == [POLITE]
    report = (answer.model_extra or {})["guardrails"]["output"][0]
    best = report["best_of_n"]
    assert best["n"] == 4
    rewards = [candidate["reward"] for candidate in best["candidates"]]
    assert len(rewards) == 4
    assert rewards[best["chosen"]] == max(rewards)  # the polite one scored highest of the four
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 48  # every answer drawn is paid for


def test_each_of_the_clients_choices_is_the_best_of_its_own_group(client: openai.OpenAI) -> None:
    answer = _ask(client, n=2)
    assert [choice.message.content for choice in answer.choices] == [POLITE, POLITE]
    assert [choice.index for choice in answer.choices] == [0, 1]


def test_a_stream_gets_the_polite_answer_once_chosen(client: openai.OpenAI) -> None:
    stream = _ask(client, stream=True, stream_options={"include_usage": True})
    text, last = "", None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
        last = chunk
    assert text == POLITE
    assert last is not None
    assert last.usage is not None
    assert last.usage.completion_tokens == 48
    assert (last.model_extra or {})["guardrails"]["output"][0]["best_of_n"]["n"] == 4


def test_the_candidates_are_recorded_ranked_together_and_measured_by_the_export(
    client: openai.OpenAI, served: Served, tmp_path: Path
) -> None:
    answer = _ask(client, extra_headers={"x-request-id": "bon-ranked"})
    assert answer.choices[0].message.content == POLITE
    task, rewards = asyncio.run(_ranked_task(served.redis_url))
    assert sorted(c.text for c in task.candidates) == sorted(BEST_OF_N_ANSWERS)
    assert {c.origin for c in task.candidates} == {"best-of-n"}
    assert rewards[POLITE] == max(rewards.values())
    shown = labelstudio_data(task)
    assert len(shown["completions"]) == 4
    assert "reward" not in str(shown)

    out = tmp_path / "dataset"
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "feedback", "export", "--config", str(served.config), "--out",
         str(out), "--format", "trl"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    card = (out / "README.md").read_text()
    assert "## Reward models and human rankings" in card
    # One annotator ranked the four answers: C(4,2) = 6 human pairs. They put the polite one first, as the
    # reward model did, so at least its 3 pairs agree.
    row = next(line for line in card.splitlines() if line.startswith("| `") and "reward-model" in line)
    tasks, pairs, agree = (int(cell) for cell in row.split("|")[2:5])
    assert (tasks, pairs) == (1, 6)
    assert agree >= 3


async def _ranked_task(redis_url: str) -> tuple[RankingTask, dict[str, float]]:
    """The recorded events filed as the sync files them, the request's ranking task, and an annotator's
    ranking of it (the polite answer first) saved as the sync would."""
    client = redis.asyncio.from_url(redis_url)
    store = FeedbackStore(client)
    collector = EventCollector(client, store, "hhh:events", settle_s=0.0)
    await collector.ensure_group()
    for _ in range(50):  # events reach Redis off the hot path
        await collector.collect()
        located = await store.locate_completion("acme", "bon-ranked")
        if located is not None:
            found = await store.candidate_set(located[0])
            if found.original is not None and len(found.candidates) == 3:
                break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the request's events were not all recorded")
    task = ranking_task(found.original, found.candidates)
    assert task is not None
    rewards = {c.text: c.reward for c in task.candidates if c.reward is not None}
    assert len(rewards) == 4
    order = sorted(task.candidates, key=lambda c: c.text != POLITE)
    await store.save_annotation(
        AnnotationRecord(
            task_key=task.task_key, annotation_id=1, ls_task_id=1, project=1, annotator="ann",
            places=[[c.id] for c in order], created_at="t", updated_at="t",
        )
    )  # fmt: skip
    await store.record_pushed(1, [(task, 1)])
    await client.aclose()
    return task, rewards
