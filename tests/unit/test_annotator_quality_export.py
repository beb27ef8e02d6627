"""The export with annotator quality controls, on a real redis-server: gold tasks give no pairs but score
the annotators, ``--min-gold-accuracy`` leaves a careless one out of every task, and the card reports
gold accuracy and position bias per annotator (a simulated annotator who prefers Answer A is caught)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio

from feedback.labelstudio.gold import GoldItem, gold_task
from feedback.labelstudio.tasks import shown_candidates
from feedback.preferences.export import ExportOptions, gather
from feedback.preferences.writer import write_dataset
from feedback.ranking import AnnotationRecord, Candidate, RankingTask
from feedback.store import FeedbackStore
from tests.support.redis_server import redis_server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[FeedbackStore]:
    client = redis.asyncio.from_url(redis_url)
    await client.flushdb()
    yield FeedbackStore(client)
    await client.aclose()


def _task(n: int) -> RankingTask:
    return RankingTask(
        task_key=f"task-{n}", request_id=f"req-{n}", tenant="acme", model="m", endpoint="chat.completions",
        created=0.0, request={"messages": [{"role": "user", "content": f"Question {n}?"}]},
        prompt=f"user: Question {n}?",
        candidates=[Candidate(id=f"ev-{n}:{i}", text=f"Answer {i} to {n}.", model="m", origin="answer")
                    for i in range(3)],
    )  # fmt: skip


async def _annotate(
    store: FeedbackStore, task: RankingTask, annotator: str, places: list[list[str]], serial: list[int]
) -> None:
    serial[0] += 1
    await store.record_pushed(1, [(task, serial[0])])
    await store.save_annotation(AnnotationRecord(
        task_key=task.task_key, annotation_id=serial[0], ls_task_id=serial[0], project=1, annotator=annotator,
        places=places, created_at="t", updated_at="t", shown=[c.id for c in shown_candidates(task)],
    ))  # fmt: skip


async def test_gold_scores_annotators_and_min_gold_accuracy_leaves_the_careless_out(
    store: FeedbackStore, tmp_path: Path
) -> None:
    rng = random.Random(3)
    serial = [0]
    item = GoldItem(id="capital", prompt="Capital of France?", answers=["Paris.", "Lyon.", "Nice."], best=0)
    for n in range(4):  # careful gets every gold task right; lazy ranks Answer A best every time
        gold = gold_task(item, n)
        assert gold.gold is not None
        rest = [c.id for c in gold.candidates if c.id != gold.gold]
        await _annotate(store, gold, "careful", [[gold.gold], rest], serial)
        first = shown_candidates(gold)[0].id
        await _annotate(
            store, gold, "lazy", [[first], [c.id for c in gold.candidates if c.id != first]], serial
        )
    for n in range(30):
        task = _task(n)
        ids = [c.id for c in task.candidates]
        await _annotate(
            store, task, "careful", [[i] for i in sorted(ids, key=lambda _: rng.random())], serial
        )
        shown = [c.id for c in shown_candidates(task)]
        await _annotate(store, task, "lazy", [[i] for i in shown], serial)  # the order shown, untouched

    everyone = ExportOptions(sources=("human",), test_fraction=0.0)
    gathered = await gather(store, everyone)
    assert gathered.counts["gold_tasks"] == 4
    assert gathered.counts["tasks"] == 30  # gold tasks give no pairs
    assert len(gathered.pairs) == 2 * 30 * 3
    assert all(not p.task_key.startswith("gold") and "France" not in str(p.request) for p in gathered.pairs)
    careful, lazy = gathered.quality["careful"], gathered.quality["lazy"]
    assert (careful.gold_tasks, careful.gold_accuracy) == (4, 1.0)
    assert lazy.gold_tasks == 4
    lucky = sum(shown_candidates(gold_task(item, n))[0].id == gold_task(item, n).gold for n in range(4))
    assert lucky < 4  # the shuffle put the known best answer first only sometimes
    assert lazy.gold_correct == lucky
    assert lazy.position_biased
    assert not careful.position_biased

    strict = ExportOptions(sources=("human",), test_fraction=0.0, min_gold_accuracy=0.9)
    kept = await gather(store, strict)
    assert {p.comparison.annotator for p in kept.pairs} == {"careful"}
    assert kept.left_out == ["lazy"]
    write_dataset(kept, strict, tmp_path / "out", None)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Annotator quality: gold tasks and position bias" in card
    assert "| careful | 4 | 100.0% | 34 |" in card
    assert "likely position bias" in card
    assert "`--min-gold-accuracy`: 0.9: left out" in card


def test_min_gold_accuracy_must_be_a_share() -> None:
    with pytest.raises(ValueError, match="--min-gold-accuracy"):
        ExportOptions(min_gold_accuracy=1.5)
