"""AI feedback meets people, with Redis and Label Studio real: a ``revise`` rule's work, recorded as the
gateway records it (the completion holds the revision the client got, a ``RevisionEvent`` the answer it
replaced), goes to annotators as a three-way ranking (the other answer, the revision, the replaced
original); their rankings come back, and the export's dataset card reports how often people agreed
with the AI's preference, in figures counted here from the rankings made."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import redis
import redis.asyncio
import yaml
from label_studio_sdk import LabelStudio
from prometheus_client import CollectorRegistry

from feedback.events import CompletionEvent, RevisionEvent
from feedback.labelstudio.tasks import letters_to_ids
from feedback.ranking import RankingTask
from feedback.recorder import EventRecorder, RecorderMetrics
from feedback.spool import DiskSpool
from tests.support.labelstudio_server import LabelStudioServer
from tests.support.ranking_results import bucket_ranking, letters_by_text
from tests.support.redis_server import redis_server
from tests.support.revise_gateway import book, gateway, revise

PROJECT = "revision rankings"
# (the answer the guards pass, the one a critic revises, the critic's revision). The fake upstream echoes
# the prompt, one part (split at "||") a choice; the word guard finds "BADWORD".
PROMPTS = [
    ("Cats are calm company.", "you BADWORD, cats are useless", "Cats can seem aloof, yet many love them."),
    ("Tea is soothing.", "only a BADWORD drinks tea", "Tea is not to everyone's taste."),
    ("Rain helps gardens.", "rain is for BADWORD people", "Some people would rather have sun."),
]
# How the annotator ranks each prompt's candidates, best first ("revision" above "original": agreeing with
# the AI, which chose the revision over the answer it replaced).
ORDERS = [
    ["revision", "answer", "original"],
    ["answer", "revision", "original"],
    ["original", "answer", "revision"],
]


async def _record_through_the_gateway(
    redis_url: str, spool: Path
) -> list[tuple[CompletionEvent, RevisionEvent]]:
    """Each prompt through a gateway whose toxicity rule revises (n=2: one answer passes, one is revised by
    the scripted critic), its events written by the product's recorder into the real Redis stream."""
    recorded: list[tuple[CompletionEvent, RevisionEvent]] = []
    client = redis.asyncio.from_url(redis_url)
    recorder = EventRecorder(client, DiskSpool(spool), RecorderMetrics(CollectorRegistry()))
    await recorder.start()
    async with gateway(book(revise())) as gw:
        for kind, toxic, revised in PROMPTS:
            gw.upstream.critic_replies = ["The answer insults the reader.", revised]
            response = await gw.chat(f"{kind}||{toxic}", n=2)
            assert [c["message"]["content"] for c in response.json()["choices"]] == [kind, revised]
    for event in gw.recorder.events:  # in the order the gateway recorded them
        recorder.record(event)
    await recorder.close()
    await client.aclose()
    completions = [e for e in gw.recorder.events if isinstance(e, CompletionEvent)]
    revisions = {e.request_id: e for e in gw.recorder.events if isinstance(e, RevisionEvent)}
    for completion in completions:
        recorded.append((completion, revisions[completion.id]))
    assert len(recorded) == len(PROMPTS)
    return recorded


def _hhh(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "feedback", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_served_revision_is_ranked_by_people_and_the_card_measures_their_agreement_with_the_ai(
    labelstudio: LabelStudioServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LABEL_STUDIO_TOKEN", labelstudio.token)
    with redis_server(tmp_path) as redis_url:
        recorded = asyncio.run(_record_through_the_gateway(redis_url, tmp_path / "spool"))
        with redis.Redis.from_url(redis_url) as client:
            assert client.xlen("hhh:events") == 2 * len(PROMPTS)  # a completion and a revision each
        config = tmp_path / "gateway.yaml"
        settings = {"url": labelstudio.url, "api_key": "${TEST_LABEL_STUDIO_TOKEN}", "project_title": PROJECT}
        config.write_text(yaml.safe_dump({
            "data_dir": str(tmp_path / "data"), "redis": {"url": redis_url},
            "feedback": {"labelstudio": settings},
        }))  # fmt: skip

        pushed = _hhh("sync", "--config", str(config), "--flush")
        assert "events collected: 6; tasks pushed: 3" in pushed, pushed
        assert "prompts without two answers: 0" in pushed

        ls = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)
        project = next(p for p in ls.projects.list(title=PROJECT) if p.title == PROJECT)
        tasks = {t.data["prompt"]: t for t in ls.tasks.list(project=project.id, fields="all")}
        assert sorted(tasks) == sorted(f"{kind}||{toxic}" for kind, toxic, _ in PROMPTS)
        agree = disagree = 0
        for (kind, toxic, revised), (completion, revision), order in zip(
            PROMPTS, recorded, ORDERS, strict=True
        ):
            # Ids are the gateway's own (a random event id, then the choice or the side of the revision),
            # never anything a client sent.
            assert re.fullmatch(r"[0-9a-f]{32}", completion.id)
            assert re.fullmatch(r"[0-9a-f]{32}", revision.id)
            ids = {
                "answer": f"{completion.id}:0",
                "revision": f"{completion.id}:1",  # what the client got: the critic's revision
                "original": f"{revision.id}:original",  # the answer it replaced, never served
            }
            task = tasks[f"{kind}||{toxic}"]
            # Shuffled and lettered; only the answer the guard flagged carries a badge.
            letters = letters_by_text(task.data)
            titles = {c["body"]: c["title"] for c in task.data["completions"]}
            assert titles == {
                kind: f"Answer {letters[kind]}", revised: f"Answer {letters[revised]}",
                toxic: f"Answer {letters[toxic]} ⚠ toxicity: revise",
            }  # fmt: skip
            assert sorted(letters.values()) == ["A", "B", "C"]
            text = {"answer": kind, "revision": revised, "original": toxic}
            with redis.Redis.from_url(redis_url) as client:  # the gateway maps the letters back
                raw = client.get(f"hhh:fb:task:{task.data['hhh_task_key']}")
            mapping = letters_to_ids(msgspec.json.decode(raw, type=RankingTask))  # type: ignore[arg-type]
            assert {name: mapping[letters[text[name]]] for name in ids} == ids
            ls.annotations.create(id=task.id, result=bucket_ranking([letters[text[name]] for name in order]))
            ai_agrees = order.index("revision") < order.index("original")
            agree += ai_agrees
            disagree += not ai_agrees
        assert (agree, disagree) == (2, 1)  # the rankings above: a real figure, not all one way

        received = _hhh("sync", "--config", str(config))  # the reconciling poll (no webhook here)
        assert "tasks pushed: 0" in received
        assert "annotations received: 3 new" in received, received

        out = tmp_path / "dataset"
        summary = _hhh("export", "--config", str(config), "--out", str(out), "--sources", "human,ai-feedback",
                       "--test-fraction", "0")  # fmt: skip
    judgements = agree + disagree
    human_pairs = len(PROMPTS) * 3  # one ranking of three candidates a task: C(3,2) pairs each
    ai_pairs = len(PROMPTS)
    rate = f"{agree / judgements:.1%}"
    assert f"exported {human_pairs + ai_pairs} pairs (train {human_pairs + ai_pairs})" in summary, summary
    assert f"AI feedback vs human rankings: {rate} agree over {judgements} judgements" in summary

    card = (out / "README.md").read_text()
    for expected in (
        "Sources selected: human, ai-feedback",
        f"| train | {human_pairs + ai_pairs} |",
        f"Ranking tasks: {len(PROMPTS)}, with {judgements} annotations.",
        f"| human | yes | {human_pairs} | {human_pairs} |",
        "| user-feedback | no | 0 | 0 |",
        f"| ai-feedback | yes | {ai_pairs} | {ai_pairs} |",
        f"AI feedback (revisions) read: {ai_pairs} ({ai_pairs} made while serving, 0 offline",
        f"Pairs made, by kind: ranking {human_pairs}, revision {ai_pairs}.",
        f"Revisions by critic model: `critic` ({ai_pairs}).",
        f"Agreement: {rate} of {judgements} human judgements of {ai_pairs} AI pairs put the AI's chosen "
        f"answer above its rejected one ({disagree} below, 0 tied; ties count as not agreeing).",
    ):
        assert expected in card, (expected, card)

    # The rows say where each pair came from; the AI's are the revision over the answer it replaced.
    rows = [json.loads(line) for path in (out / "jsonl").glob("*.jsonl") for line in path.open()]
    ai_rows = sorted((r["chosen"], r["rejected"]) for r in rows if r["source"] == "ai-feedback")
    assert ai_rows == sorted((revised, toxic) for _, toxic, revised in PROMPTS)
    assert sum(r["source"] == "human" for r in rows) == human_pairs
