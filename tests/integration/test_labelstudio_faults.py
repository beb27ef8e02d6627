"""Label Studio failing under the sync: stopped mid-run, and an import whose response is lost after the
server made the tasks. The sync retries, loses nothing, and never makes a task twice."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio

from feedback.collector import EventCollector
from feedback.events import CompletionEvent, encode_event
from feedback.labelstudio.client import LabelStudioProject
from feedback.labelstudio.errors import LabelStudioUnavailable
from feedback.labelstudio.receiver import AnnotationReceiver
from feedback.labelstudio.settings import LabelStudioSettings
from feedback.labelstudio.sync import LabelStudioSync
from feedback.store import FeedbackStore
from tests.support.labelstudio_server import LabelStudioServer, ensure_installed
from tests.support.redis_server import redis_server

PROMPTS = 24
BATCH = 4


def _event(number: int) -> CompletionEvent:
    return CompletionEvent(
        id=f"req-{number}", completion_id=f"chatcmpl-{number}", created=time.time(), tenant="t", model="m",
        endpoint="chat.completions", stream=False,
        request={"messages": [{"role": "user", "content": f"question {number}"}]},
        choices=[{"index": i, "message": {"role": "assistant", "content": f"answer {number}.{i}"}}
                 for i in range(2)],
    )  # fmt: skip


class LosingTransport(httpx.AsyncBaseTransport):
    """Real HTTP, except that the response to the ``lose``-th import Label Studio serves never arrives:
    the tasks are made, and the caller cannot know."""

    def __init__(self, lose: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lose = lose
        self.imports_served = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path.endswith("/import"):
            self.imports_served += 1
            if self.imports_served == self.lose:
                await response.aclose()
                raise httpx.ReadError("connection lost before the response arrived")
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class StopAfterFirstBatch:
    """Progress hook: stops Label Studio once the first batch is in, and starts it again 3 s later."""

    def __init__(self, server: LabelStudioServer) -> None:
        self.server = server
        self.stage = ""
        self.restarter: threading.Thread | None = None

    def start(self, stage: str, total: int | None) -> None:
        self.stage = stage

    def advance(self, amount: int = 1) -> None:
        if self.stage == "pushing tasks" and self.restarter is None:
            self.server.stop()
            self.restarter = threading.Thread(target=lambda: (time.sleep(3), self.server.start()))
            self.restarter.start()

    def finish(self) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, server_logs: Path) -> Iterator[LabelStudioServer]:
    started = LabelStudioServer(ensure_installed(), tmp_path / "ls", server_logs)  # ours alone: we stop it
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FeedbackStore]:
    with redis_server(tmp_path) as url:
        client = redis.asyncio.from_url(url)
        for number in range(PROMPTS):
            await client.xadd("hhh:events", {"kind": "completion", "event": encode_event(_event(number))})
        yield FeedbackStore(client)
        await client.aclose()


def _sync(
    server: LabelStudioServer, store: FeedbackStore, api: LabelStudioProject, **progress: object
) -> LabelStudioSync:
    settings = api.settings
    collector = EventCollector(store.client, store, "hhh:events", settle_s=0)
    return LabelStudioSync(settings, api, store, collector, AnnotationReceiver(store), **progress)  # type: ignore[arg-type]


def _settings(server: LabelStudioServer, retry_for_s: float) -> LabelStudioSettings:
    return LabelStudioSettings(
        url=server.url,
        api_key=server.token,
        project_title="faults",
        batch_size=BATCH,
        retry_for_s=retry_for_s,
    )


async def _tasks_in_labelstudio(server: LabelStudioServer, project: int) -> list[str]:
    async with httpx.AsyncClient(headers={"Authorization": f"Token {server.token}"}) as client:
        reply = await client.get(
            f"{server.url}/api/tasks", params={"project": project, "page_size": 1000, "fields": "all"}
        )
        return [t["data"]["hhh_task_key"] for t in reply.json()["tasks"]]


async def test_label_studio_stopped_mid_sync_loses_nothing_and_duplicates_nothing(
    server: LabelStudioServer, store: FeedbackStore
) -> None:
    transport = LosingTransport(lose=2)  # the first import after the restart: made, but unanswered
    hook = StopAfterFirstBatch(server)
    async with LabelStudioProject(_settings(server, retry_for_s=120), transport=transport) as api:
        sync = _sync(server, store, api, progress=hook)
        project = await sync.bootstrap()
        summary = await sync.run_once(flush=True)
    assert hook.restarter is not None
    hook.restarter.join()

    keys = await _tasks_in_labelstudio(server, project)
    assert len(keys) == PROMPTS  # every prompt made it ...
    assert len(set(keys)) == PROMPTS  # ... exactly once
    assert summary.pushed + summary.recovered == PROMPTS
    assert summary.recovered == BATCH  # the batch whose answer was lost was found, not re-sent
    assert len(await store.pushed_task_ids(project, keys)) == PROMPTS
    assert await store.in_flight(project) == []
    assert await store.settling_count() == 0


async def test_an_import_interrupted_for_good_is_recovered_by_the_next_run(
    server: LabelStudioServer, store: FeedbackStore
) -> None:
    # The first run gives up at once when the answer to its first import is lost (as if it had died).
    async with LabelStudioProject(_settings(server, retry_for_s=0), transport=LosingTransport(lose=1)) as api:
        first = _sync(server, store, api)
        project = await first.bootstrap()
        with pytest.raises(LabelStudioUnavailable):
            await first.run_once(flush=True)
    assert len(await store.in_flight(project)) == BATCH  # made in Label Studio, unknown to Redis

    async with LabelStudioProject(_settings(server, retry_for_s=30)) as api:
        second = _sync(server, store, api)
        await second.bootstrap()
        summary = await second.run_once(flush=True)
    keys = await _tasks_in_labelstudio(server, project)
    assert sorted(keys) == sorted(set(keys))
    assert len(keys) == PROMPTS
    assert summary.recovered == BATCH
    assert summary.pushed == PROMPTS - BATCH
