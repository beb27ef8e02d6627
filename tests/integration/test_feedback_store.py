"""The stream collector and the feedback store on a real redis-server: candidate sets settle when whole,
delivery is at least once (a crash before XACK re-delivers, and filing twice changes nothing), unreadable
events go to a dead-letter list, and an annotation delivered by webhook and by poll is counted once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio
from label_studio_sdk import LabelStudio

from feedback.collector import EventCollector
from feedback.events import CompletionEvent, FeedbackEvent, encode_event
from feedback.ranking import AnnotationRecord
from feedback.store import FeedbackStore
from tests.support.labelstudio_server import LabelStudioServer
from tests.support.redis_server import redis_server

STREAM = "hhh:events"


def _event(request_id: str, answers: int = 1, **extra: object) -> CompletionEvent:
    return CompletionEvent(
        id=request_id, completion_id=f"chatcmpl-{request_id}", created=time.time(), tenant="t", model="m",
        endpoint="chat.completions", stream=False, request={"messages": [{"role": "user", "content": "q"}]},
        choices=[{"index": i, "message": {"role": "assistant", "content": f"a{i}"}} for i in range(answers)],
        **extra,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[redis.asyncio.Redis]:
    with redis_server(tmp_path) as url:
        connection = redis.asyncio.from_url(url)
        yield connection
        await connection.aclose()


async def _add(client: redis.asyncio.Redis, event: CompletionEvent | FeedbackEvent, kind: str) -> None:
    await client.xadd(STREAM, {"kind": kind, "event": encode_event(event)})


async def test_a_set_settles_once_the_original_and_its_candidates_are_in(client: redis.asyncio.Redis) -> None:
    store = FeedbackStore(client)
    collector = EventCollector(client, store, STREAM, settle_s=3600, consumer="c1")
    await collector.ensure_group()
    await _add(client, _event("r1", candidates_requested=2), "completion")
    await _add(client, _event("r1.0", candidate_of="r1", sampling={"temperature": 0.3}), "completion")
    await _add(client, _event("r2", answers=2), "completion")  # n=2, nothing else coming: due at once
    assert await collector.collect() == 3
    assert await store.settled(time.time(), 10) == ["r2"]  # r1 waits for its second candidate
    await _add(client, _event("r1.1", candidate_of="r1", sampling={"temperature": 1.1}), "completion")
    await collector.collect()
    assert sorted(await store.settled(time.time(), 10)) == ["r1", "r2"]
    found = await store.candidate_set("r1")
    assert found.original is not None
    assert found.original.id == "r1"
    assert [c.id for c in found.candidates] == ["r1.0", "r1.1"]


async def test_unacknowledged_events_are_delivered_again_and_filed_once(client: redis.asyncio.Redis) -> None:
    store = FeedbackStore(client)
    for number in range(5):
        await _add(client, _event(f"r{number}", answers=2), "completion")
    await _add(client, FeedbackEvent(id="fb-1", created=0.0, tenant="t", completion_id="chatcmpl-r1",
                                     rating="up"), "feedback")  # fmt: skip
    crashed = EventCollector(client, store, STREAM, settle_s=0, consumer="worker")
    await crashed.ensure_group()
    # It reads a batch, then "dies" before filing and acknowledging it.
    await client.xreadgroup(crashed.group, "worker", {STREAM: ">"}, count=3)
    restarted = EventCollector(client, store, STREAM, settle_s=0, consumer="worker")
    filed = 0
    while count := await restarted.collect(count=2):
        filed += count
    assert filed == 6  # the 3 it had been given, then the 3 never read
    assert (await client.xpending(STREAM, crashed.group))["pending"] == 0
    assert len(await store.settled(time.time(), 100)) == 5
    assert await client.hget(store.key("feedback"), "fb-1") is not None
    # Filing an event again (at-least-once delivery) changes nothing.
    await store.add_completion(_event("r0", answers=2), encode_event(_event("r0", answers=2)), 0)
    assert len((await store.candidate_set("r0")).candidates) == 0
    assert len(await store.settled(time.time(), 100)) == 5


async def test_an_unreadable_event_is_kept_aside_with_the_reason(client: redis.asyncio.Redis) -> None:
    store = FeedbackStore(client)
    await client.xadd(STREAM, {"kind": "completion", "event": b"{not json"})
    await client.xadd(STREAM, {"kind": "telepathy", "event": b"{}"})
    collector = EventCollector(client, store, STREAM, settle_s=0)
    await collector.ensure_group()
    assert await collector.collect() == 2
    dead = [msgspec.json.decode(x) for x in await client.lrange(store.key("dead-events"), 0, -1)]
    assert [d["fields"]["kind"] for d in dead] == ["completion", "telepathy"]
    assert "unknown event kind" in dead[1]["reason"]
    assert (await store.stats())["dead_events"] == 2


async def test_an_annotation_delivered_twice_counts_once_and_a_newer_version_replaces_it(
    client: redis.asyncio.Redis,
) -> None:
    store = FeedbackStore(client)
    record = AnnotationRecord(
        task_key="k", annotation_id=7, ls_task_id=1, project=1, annotator="1", places=[["a"], ["b"]],
        created_at="2026-01-01T00:00:00.000000Z", updated_at="2026-01-01T00:00:00.000000Z",
    )  # fmt: skip
    assert await store.save_annotation(record) == "new"
    assert await store.save_annotation(record) == "same"  # the poll, after the webhook
    newer = msgspec.structs.replace(record, places=[["b"], ["a"]], updated_at="2026-01-02T00:00:00.000000Z")
    assert await store.save_annotation(newer) == "updated"
    assert await store.save_annotation(record) == "same"  # an older copy never wins
    assert [r.places for r in await store.annotations("k")] == [[["b"], ["a"]]]
    assert await store.annotated_task_keys() == ["k"]
    assert await store.delete_annotation("k", 7)
    assert await store.annotated_task_keys() == []
    assert await store.stats() == {"received": 1, "updated": 1, "deleted": 1}


async def test_one_sync_at_a_time(client: redis.asyncio.Redis) -> None:
    from feedback.labelstudio.sync import SyncBusy, SyncLock

    store = FeedbackStore(client)
    first, second = SyncLock(store, ttl_s=60), SyncLock(store, ttl_s=60)
    await first.acquire()
    with pytest.raises(SyncBusy, match="another `hhh feedback sync` is running"):
        await second.acquire()
    await second.release()  # not its lock: changes nothing
    with pytest.raises(SyncBusy):
        await second.acquire()
    await first.release()
    await second.acquire()


async def test_a_sync_whose_lock_expired_does_not_take_it_back(client: redis.asyncio.Redis) -> None:
    from feedback.labelstudio.sync import SyncBusy, SyncLock

    store = FeedbackStore(client)
    slow = SyncLock(store, ttl_s=0.05)
    await slow.acquire()
    await slow.refresh()
    await asyncio.sleep(0.1)  # it stalls past its expiry; another sync starts
    other = SyncLock(store, ttl_s=60)
    await other.acquire()
    with pytest.raises(SyncBusy, match="expired"):
        await slow.refresh()
    assert await client.get(other.key) == other.token.encode()


class _RefusingLabelStudio:
    """A stand-in for the Label Studio client that refuses any batch holding a 'poison' prompt (400)."""

    def __init__(self) -> None:
        self.made: list[str] = []

    async def import_tasks(self, project: int, tasks: list[dict[str, object]]) -> list[int]:
        from feedback.labelstudio.errors import LabelStudioRefused

        if any("poison" in str(t["prompt"]) for t in tasks):
            raise LabelStudioRefused("import tasks: HTTP 400 bad data")
        self.made += [str(t["hhh_task_key"]) for t in tasks]
        return list(range(len(self.made) - len(tasks), len(self.made)))

    async def find_tasks(self, project: int, task_keys: list[str]) -> dict[str, int]:
        return {}

    async def changed_tasks(self, project: int, since: str | None) -> AsyncIterator[dict[str, object]]:
        return
        yield


async def test_a_task_label_studio_refuses_is_set_aside_and_the_rest_go_through(
    client: redis.asyncio.Redis,
) -> None:
    from feedback.labelstudio.receiver import AnnotationReceiver
    from feedback.labelstudio.settings import LabelStudioSettings
    from feedback.labelstudio.sync import LabelStudioSync

    store = FeedbackStore(client)
    for number in range(6):
        event = _event(f"r{number}", answers=2)
        if number == 3:
            event.request = {"messages": [{"role": "user", "content": "poison"}]}
        await _add(client, event, "completion")
    collector = EventCollector(client, store, STREAM, settle_s=0)
    await collector.ensure_group()
    fake = _RefusingLabelStudio()
    settings = LabelStudioSettings(url="http://ls.test", api_key="k", batch_size=4)
    sync = LabelStudioSync(settings, fake, store, collector, AnnotationReceiver(store))  # type: ignore[arg-type]
    sync.project = 1
    summary = await sync.run_once(flush=True)
    assert (summary.pushed, summary.refused) == (5, 1)
    assert len(fake.made) == 5
    refused = msgspec.json.decode(await client.lindex(store.key("refused"), 0))
    assert refused["task"]["request_id"] == "r3"
    assert "HTTP 400" in refused["reason"]
    assert await store.settling_count() == 0
    assert await store.in_flight(1) == []


async def test_a_real_label_studio_400_is_read_as_a_refusal_and_the_task_set_aside(
    client: redis.asyncio.Redis, labelstudio: LabelStudioServer
) -> None:
    """The same isolation, with the refusal coming from a real Label Studio: a task whose data is not an
    object is answered 400 by the server itself, and only that task is set aside."""
    from feedback.labelstudio.client import LabelStudioProject
    from feedback.labelstudio.errors import LabelStudioRefused
    from feedback.labelstudio.receiver import AnnotationReceiver
    from feedback.labelstudio.settings import LabelStudioSettings
    from feedback.labelstudio.sync import LabelStudioSync

    class PoisoningProject(LabelStudioProject):
        """The real client; a 'poison' prompt's task is sent as a bare string, which the server refuses."""

        async def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> list[int]:
            sent: list[Any] = [str(t) if "poison" in str(t["prompt"]) else t for t in tasks]
            return await super().import_tasks(project, sent)

    settings = LabelStudioSettings(
        url=labelstudio.url, api_key=labelstudio.token, project_title="refused tasks", batch_size=4
    )
    async with PoisoningProject(settings) as api:
        project = await api.ensure_project()
        with pytest.raises(LabelStudioRefused, match="HTTP 400"):
            await api.import_tasks(project, [{"prompt": "poison"}])
        store = FeedbackStore(client)
        for number in range(6):
            event = _event(f"r{number}", answers=2)
            if number == 3:
                event.request = {"messages": [{"role": "user", "content": "poison"}]}
            await _add(client, event, "completion")
        collector = EventCollector(client, store, STREAM, settle_s=0)
        await collector.ensure_group()
        sync = LabelStudioSync(settings, api, store, collector, AnnotationReceiver(store))
        sync.project = project
        summary = await sync.run_once(flush=True)
    assert (summary.pushed, summary.refused) == (5, 1)
    refused = msgspec.json.decode(await client.lindex(store.key("refused"), 0))
    assert "HTTP 400" in refused["reason"]
    assert await store.in_flight(project) == []
    made = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token).tasks.list(project=project)
    assert len(list(made)) == 5
