"""presidio in a child process of its own (``pii.own_process``, the default; issue 19): the same
findings as in the gateway's process on the suite's labelled sets, and a child that dies costs one
judgement, not the guard."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from guards.child_process import ChildProcessDied
from guards.metrics import GuardMetrics
from guards.pii import PiiConfig, PiiGuard
from guards.registry import GuardResources
from guards.runner import RunnerPool
from tests.support.processes import model_children, wait_gone

pytestmark = pytest.mark.asyncio(loop_scope="module")
DATA = Path(__file__).resolve().parents[1] / "data" / "pii"


def _texts() -> list[str]:
    names = ("general_knowledge_answers.jsonl", "presidio_evaluator_sentences.jsonl")
    return [json.loads(line)["text"] for name in names for line in (DATA / name).read_text().splitlines()]


def children() -> set[int]:
    return model_children(os.getpid())


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def metrics() -> GuardMetrics:
    return GuardMetrics(CollectorRegistry())


@dataclass
class Guards:
    in_thread: PiiGuard
    in_child: PiiGuard
    pool: RunnerPool
    others: set[int]  # child processes this test did not start (other modules' gateways)

    def ours(self) -> set[int]:
        return children() - self.others


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def guards(metrics: GuardMetrics, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Guards]:
    pool = RunnerPool(metrics)
    others = children()
    resources = GuardResources(pool, metrics, tmp_path_factory.mktemp("pii"))
    in_thread = PiiGuard("pii-thread", PiiConfig(own_process=False), resources)
    await in_thread.start()
    assert children() == others  # a thread: no process
    in_child = PiiGuard("pii", PiiConfig(), resources)
    await in_child.start()
    yield Guards(in_thread, in_child, pool, others)
    await pool.close()


async def test_findings_in_the_child_are_those_in_the_gateways_process(guards: Guards) -> None:
    in_thread, in_child = guards.in_thread, guards.in_child
    texts = _texts()
    assert len(texts) > 500
    thresholds = dict(in_child.default_thresholds)
    here = await in_thread.judge(texts, thresholds)
    there = await in_child.judge(texts, thresholds)
    for text, a, b in zip(texts, here, there, strict=True):
        assert (a.categories, a.spans, a.scores) == (b.categories, b.spans, b.scores), text
        assert a.rewritten == b.rewritten, text
    assert sum(not verdict.allowed for verdict in there) > 100  # it found things: not two empty answers


async def test_the_child_holds_presidio_without_torch(guards: Guards) -> None:
    """thinc imports torch when it is installed, at about 330 MiB: the default pipeline's child goes
    without it."""
    [child] = guards.ours()
    maps = mapped_files(child)
    assert "spacy" in maps or "thinc" in maps
    assert "libtorch" not in maps


async def test_a_killed_presidio_child_fails_one_judgement_then_is_started_again(
    guards: Guards, metrics: GuardMetrics
) -> None:
    """The threat: the child is killed (the OOM killer, a crash in native code). The judgement in flight
    fails (its rule's ``on_error`` decides, closed by default); the next ones are judged as before."""
    in_child = guards.in_child
    [child] = guards.ours()
    os.kill(child, signal.SIGKILL)
    assert wait_gone(child)
    with pytest.raises(ChildProcessDied):
        await in_child.judge(["Call Jane Doe on 212-555-0199."], {"PERSON": 0.5, "PHONE_NUMBER": 0.4})
    [verdict] = await in_child.judge(["Call Jane Doe on 212-555-0199."], {"PERSON": 0.5, "PHONE_NUMBER": 0.4})
    assert verdict.categories == ["PERSON", "PHONE_NUMBER"]
    [new_child] = guards.ours()
    assert new_child != child
    restarts = metrics.child_restarts.collect()[0].samples
    assert [sample.value for sample in restarts if sample.name.endswith("_total")] == [1.0]


async def test_closing_the_runners_ends_the_child(guards: Guards) -> None:
    [child] = guards.ours()
    await guards.pool.close()
    assert wait_gone(child)
