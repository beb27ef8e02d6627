"""The reward model meets people, with Redis and Label Studio real: the answers best-of-n drew for a request,
recorded as the gateway records them (the served one as the completion event, the others as candidate
events with ``candidate_of``, each with its reward), go to annotators as one blind ranking task (the same
title for all, an order that says nothing of the winner, no reward shown); their rankings come back, and
the export's dataset card reports how often they agree with the reward model, in figures counted here
from the rankings made and the rewards recorded."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import msgspec
import pytest
import redis
import redis.asyncio
import yaml
from label_studio_sdk import LabelStudio
from prometheus_client import CollectorRegistry

from feedback.events import BestOfNRecord, CompletionEvent
from feedback.labelstudio.tasks import shown_candidates
from feedback.ranking import RankingTask
from feedback.recorder import EventRecorder, RecorderMetrics
from feedback.spool import DiskSpool
from guards.policy import Action, Policy, PolicyBook, Rule
from tests.support.best_of_n_gateway import REWARD_MODEL, best_of, gateway
from tests.support.fake_reward import politeness
from tests.support.labelstudio_server import LabelStudioServer
from tests.support.ranking_results import bucket_ranking, letters_by_text
from tests.support.redis_server import redis_server

PROJECT = "best-of-n rankings"
# (model, prompt, the answers the scripted upstream gives, in order). "scripted" honours n and draws four
# answers in one call; "scripted-no-n" does not, so its three are drawn by concurrent calls. The reward
# model (``PolitenessScorer``) gives one point per politeness word: the rewards are in the comments.
REQUESTS = [
    ("scripted", "Can you help me move house?",
     ["Go away.", "Of course, glad to help, thank you!", "Sure, I can.", "Sure, happy to help."]),  # 0 3 1 2
    ("scripted", "Will you read my essay?",
     ["No.", "Sure.", "Sure, happy to.", "Of course, glad to, thank you for asking!"]),  # 0 1 2 3
    ("scripted-no-n", "Could you water my plants?",
     ["Fine.", "Whatever.", "Of course, happy to."]),  # 0 0 2: a reward tie
]  # fmt: skip
# How the annotator ranks each request's answers, best first, by their place in REQUESTS: the first
# exactly as the reward model does, the second exactly against it, the third in part.
ORDERS = [[1, 3, 2, 0], [0, 1, 2, 3], [2, 1, 0]]
SHOWN_FIELDS = {
    "prompt", "answers", "conversation", "completions", "hhh_task_key", "hhh_layout", "request_id", "tenant",
    "model",
}  # fmt: skip


def _policies() -> PolicyBook:
    rules = [Rule(guard="toxicity", action=Action.BLOCK)]
    return PolicyBook(
        default=Policy(output=rules, best_of_n=best_of(4)),
        models={"scripted-no-n": Policy(output=rules, best_of_n=best_of(3))},
    )


async def _record_through_the_gateway(
    redis_url: str, spool: Path
) -> list[tuple[CompletionEvent, list[CompletionEvent]]]:
    """Each request through a gateway with best-of-n, its events written by the product's recorder into the
    real Redis stream; per request, the served answer's event and its candidates' events."""
    client = redis.asyncio.from_url(redis_url)
    recorder = EventRecorder(client, DiskSpool(spool), RecorderMetrics(CollectorRegistry()))
    await recorder.start()
    async with gateway(_policies()) as gw:
        for model, prompt, answers in REQUESTS:
            gw.upstream.script, gw.upstream.scripted_served = answers, 0
            response = await gw.chat(prompt, model=model)
            assert response.status_code == 200, response.text
            best = max(answers, key=politeness)
            assert [c["message"]["content"] for c in response.json()["choices"]] == [best]
    for event in gw.recorder.events:  # in the order the gateway recorded them
        recorder.record(event)
    await recorder.close()
    await client.aclose()
    completions = [e for e in gw.recorder.events if isinstance(e, CompletionEvent)]
    originals = [e for e in completions if e.candidate_of is None]
    assert len(originals) == len(REQUESTS)
    return [(o, [e for e in completions if e.candidate_of == o.id]) for o in originals]


def _hhh(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "feedback", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _drawn(original: CompletionEvent, candidates: list[CompletionEvent]) -> dict[str, tuple[str, float]]:
    """Every answer drawn, by the id its task shows (``<event id>:<choice>``): (text, recorded reward)."""
    found = {}
    for event, chosen in [(original, True), *[(c, False) for c in candidates]]:
        record = event.best_of_n
        assert isinstance(record, BestOfNRecord), event
        assert record.chosen is chosen
        assert record.reward_model == REWARD_MODEL
        (choice,) = event.choices
        found[f"{event.id}:{choice['index']}"] = (choice["message"]["content"], record.rewards[0])
    return found


def test_best_of_n_answers_are_ranked_blind_and_the_card_measures_agreement_with_the_reward_model(
    labelstudio: LabelStudioServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LABEL_STUDIO_TOKEN", labelstudio.token)
    events = sum(len(answers) for _, _, answers in REQUESTS)
    with redis_server(tmp_path) as redis_url:
        recorded = asyncio.run(_record_through_the_gateway(redis_url, tmp_path / "spool"))
        with redis.Redis.from_url(redis_url) as client:
            assert client.xlen("hhh:events") == events  # the served answer and every candidate, each
        config = tmp_path / "gateway.yaml"
        settings = {"url": labelstudio.url, "api_key": "${TEST_LABEL_STUDIO_TOKEN}", "project_title": PROJECT}
        config.write_text(yaml.safe_dump({
            "data_dir": str(tmp_path / "data"), "redis": {"url": redis_url},
            "feedback": {"labelstudio": settings},
        }))  # fmt: skip

        pushed = _hhh("sync", "--config", str(config), "--flush")
        assert f"events collected: {events}; tasks pushed: {len(REQUESTS)}" in pushed, pushed

        ls = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)
        project = next(p for p in ls.projects.list(title=PROJECT) if p.title == PROJECT)
        tasks = {t.data["prompt"]: t for t in ls.tasks.list(project=project.id, fields="all")}
        assert sorted(tasks) == sorted(prompt for _, prompt, _ in REQUESTS)
        expected = {"pairs": 0, "agree": 0, "disagree": 0, "reward_ties": 0}
        for (_, prompt, answers), (original, candidates), order in zip(
            REQUESTS, recorded, ORDERS, strict=True
        ):
            drawn = _drawn(original, candidates)
            assert len(drawn) == len(answers)
            assert all(c.candidate_of == original.id for c in candidates)
            # The recorded rewards are the reward model's, and the served answer got the highest.
            assert {text: reward for text, reward in drawn.values()} == {a: politeness(a) for a in answers}
            served = f"{original.id}:0"
            assert drawn[served][1] == max(reward for _, reward in drawn.values())

            task = tasks[prompt]
            # Only what annotators should read; no reward, no reward model, nothing marking the winner.
            assert set(task.data) == SHOWN_FIELDS
            shown = task.data["completions"]
            assert all(set(item) == {"id", "title", "body"} for item in shown)
            assert "reward" not in json.dumps(task.data).lower()
            assert REWARD_MODEL not in json.dumps(task.data)
            # All n answers, the served one among them, under letters only...
            assert sorted(item["body"] for item in shown) == sorted(text for text, _ in drawn.values())
            n = len(answers)
            assert [item["id"] for item in shown] == [chr(65 + i) for i in range(n)]
            # ... under titles that say nothing but the letter (no guard fired)...
            assert [item["title"] for item in shown] == [f"Answer {chr(65 + i)}" for i in range(n)]
            # ... in the task's own shuffled order, whichever answer won.
            stored = msgspec.json.decode(
                redis.Redis.from_url(redis_url).get(f"hhh:fb:task:{task.data['hhh_task_key']}"),  # type: ignore[arg-type]
                type=RankingTask,
            )
            assert [c.text for c in shown_candidates(stored)] == [item["body"] for item in shown]

            by_text = {text: key for key, (text, _) in drawn.items()}
            letters = letters_by_text(task.data)
            ranked = [by_text[answers[i]] for i in order]
            ls.annotations.create(id=task.id, result=bucket_ranking([letters[answers[i]] for i in order]))
            for better, worse in combinations(ranked, 2):  # better above worse in the ranking
                expected["pairs"] += 1
                reward_better, reward_worse = drawn[better][1], drawn[worse][1]
                expected["agree"] += reward_better > reward_worse
                expected["disagree"] += reward_better < reward_worse
                expected["reward_ties"] += reward_better == reward_worse
        # The rankings above: 6 agree, 6 disagree, and of the third's 3 pairs 2 agree and one is a tie.
        assert expected == {"pairs": 15, "agree": 8, "disagree": 6, "reward_ties": 1}

        received = _hhh("sync", "--config", str(config))  # the reconciling poll (no webhook here)
        assert "tasks pushed: 0" in received
        assert f"annotations received: {len(REQUESTS)} new" in received, received

        out = tmp_path / "dataset"
        summary = _hhh("export", "--config", str(config), "--out", str(out), "--sources", "human",
                       "--test-fraction", "0")  # fmt: skip
    human_pairs = expected["pairs"]  # every answer was scored: the reward pairs are all the ranking's pairs
    assert f"exported {human_pairs} pairs (train {human_pairs})" in summary, summary

    card = (out / "README.md").read_text()
    rate = f"{expected['agree'] / expected['pairs']:.1%}"
    for line in (
        f"Ranking tasks: {len(REQUESTS)}, with {len(REQUESTS)} annotations.",
        f"| human | yes | {human_pairs} | {human_pairs} |",
        "## Reward models and human rankings",
        f"| `{REWARD_MODEL}` | {len(REQUESTS)} | {expected['pairs']} | {expected['agree']} | "
        f"{expected['disagree']} | {expected['reward_ties']} | {rate} |",
    ):
        assert line in card, (line, card)
