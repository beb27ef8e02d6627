"""``hhh feedback sync``: recorded traffic → ranking tasks in Label Studio → annotations back in Redis.

One round: (1) file new events from the stream (consumer group) into candidate sets; (2) push every set
that has settled as a task, in batches; (3) poll the tasks changed since the last round and take their
annotations (the webhook usually got them first; the poll catches what it missed).

Pushing is at least once and never makes a duplicate: before an import the task keys are written down
as in flight; if the import's fate is unknown (Label Studio went away mid-call), those keys are looked
up in Label Studio before anything is sent again. Label Studio being down only delays a round: every
step retries with backoff, and what is not pushed waits in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

import redis.exceptions

from feedback.collector import EventCollector
from feedback.labelstudio.errors import LabelStudioKeyRefused, LabelStudioRefused, LabelStudioUnavailable
from feedback.labelstudio.gold import GoldItem, gold_due, gold_task, load_gold
from feedback.labelstudio.receiver import AnnotationReceiver
from feedback.labelstudio.settings import LabelStudioSettings
from feedback.labelstudio.tasks import labelstudio_data
from feedback.ranking import RankingTask, ranking_task
from feedback.store import FeedbackStore

if TYPE_CHECKING:
    from feedback.labelstudio.client import LabelStudioProject

log = logging.getLogger("hhh.labelstudio")
T = TypeVar("T")


class Progress(Protocol):
    def start(self, stage: str, total: int | None) -> None: ...
    def advance(self, amount: int = 1) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, stage: str, total: int | None) -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


class SyncBusy(RuntimeError):
    """Another sync holds the lock."""


@dataclass
class SyncSummary:
    collected: int = 0  # events filed from the stream
    pushed: int = 0  # new tasks in Label Studio
    recovered: int = 0  # tasks an interrupted import had made, found and recorded instead of re-sent
    unrankable: int = 0  # prompts with fewer than two whole answers: no task
    refused: int = 0  # tasks Label Studio refused (400), set aside in hhh:fb:refused
    not_pairwise: int = 0  # pairwise layout: prompts with more than two answers, not pushed
    gold: int = 0  # gold tasks pushed (counted in ``pushed`` too)
    received: Counter[str] = field(default_factory=Counter)  # new, updated, same, skipped, rejected, ...
    waiting: int = 0  # prompts still settling after this round

    def describe(self) -> str:
        got = self.received
        return (
            f"events collected: {self.collected}; tasks pushed: {self.pushed}"
            f"{f' (+{self.recovered} recovered)' if self.recovered else ''}; "
            f"annotations received: {got['new']} new, {got['updated']} updated, {got['deleted']} deleted, "
            f"{got['skipped']} skipped, {got['rejected']} rejected; "
            f"prompts without two answers: {self.unrankable}; prompts still settling: {self.waiting}"
            + (f"; tasks refused by Label Studio (set aside): {self.refused}" if self.refused else "")
            + (f"; gold tasks pushed: {self.gold}" if self.gold else "")
            + (
                f"; prompts with more than two answers (pairwise layout, not pushed): {self.not_pairwise}"
                if self.not_pairwise
                else ""
            )
        )


class SyncLock:
    """One sync at a time (two could import the same task twice). Expires if its holder dies."""

    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

    def __init__(self, store: FeedbackStore, ttl_s: float) -> None:
        self.store = store
        self.key = store.key("sync-lock")
        self.ttl_ms = int(ttl_s * 1000)
        self.token = secrets.token_hex(8)

    async def acquire(self) -> None:
        if not await self.store.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            raise SyncBusy(f"another `hhh feedback sync` is running (Redis key {self.key}); wait for it")

    _REFRESH = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end "
        "return 0"
    )

    async def refresh(self) -> None:
        """Extends the lock; raises SyncBusy if it expired and another sync took it meanwhile."""
        if not await self.store.client.eval(self._REFRESH, 1, self.key, self.token, self.ttl_ms):
            raise SyncBusy(f"the sync lock ({self.key}) expired and is held by another sync now")

    async def release(self) -> None:
        await self.store.client.eval(self._RELEASE, 1, self.key, self.token)


class LabelStudioSync:
    def __init__(
        self,
        settings: LabelStudioSettings,
        api: LabelStudioProject,
        store: FeedbackStore,
        collector: EventCollector,
        receiver: AnnotationReceiver,
        *,
        retention_s: float | None = 30 * 86400,
        progress: Progress | None = None,
        lock: SyncLock | None = None,
    ) -> None:
        self.settings = settings
        self.api = api
        self.store = store
        self.collector = collector
        self.receiver = receiver
        self.retention_s = retention_s
        self.progress = progress or NoProgress()
        self.lock = lock
        self.project = 0
        self.layout = settings.layout  # or "legacy", for a project made before layouts (``bootstrap``)
        self._gold: list[GoldItem] = []

    async def bootstrap(self) -> int:
        """The project (made if missing), the webhook (if configured), the consumer group."""
        if self.settings.gold_file and self.settings.gold_rate > 0:
            self._gold = load_gold(self.settings.gold_file)
        self.project = await self._retrying("find or create the project", self.api.ensure_project)
        self.layout = getattr(self.api, "layout", self.settings.layout)
        if self.settings.webhook_url and self.settings.webhook_secret:
            url, secret = self.settings.webhook_url, self.settings.webhook_secret
            await self._retrying(
                "register the webhook", lambda: self.api.ensure_webhook(self.project, url, secret)
            )
        await self.collector.ensure_group()
        return self.project

    async def run_once(self, *, flush: bool = False) -> SyncSummary:
        """One round. ``flush``: push every prompt now, without waiting for it to settle."""
        summary = SyncSummary()
        await self._collect(summary)
        await self._push(summary, math.inf if flush else time.time())
        await self._poll(summary)
        summary.waiting = await self.store.settling_count()
        return summary

    async def watch(
        self,
        stop: asyncio.Event,
        on_round: Callable[[SyncSummary], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """Rounds until ``stop`` is set; a round that fails is logged, and the next one tries again."""
        while not stop.is_set():
            if self.lock is not None:
                await self.lock.refresh()
            try:
                summary = await self.run_once()
                log.info("sync round: %s", summary.describe())
                if on_round is not None:
                    on_round(summary)
            except LabelStudioUnavailable as exc:
                log.warning("Label Studio unavailable (%s); nothing is lost, retrying next round", exc)
                if on_failure is not None:
                    on_failure()
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("Redis unavailable (%s); retrying next round", exc)
                if on_failure is not None:
                    on_failure()
            with contextlib.suppress(TimeoutError):  # the interval passed: next round
                await asyncio.wait_for(stop.wait(), self.settings.poll_interval_s)

    async def _collect(self, summary: SyncSummary) -> None:
        self.progress.start("collecting events", await self.collector.lag())
        while filed := await self.collector.collect():
            summary.collected += filed
            self.progress.advance(filed)
        self.progress.finish()

    async def _push(self, summary: SyncSummary, due: float) -> None:
        await self._recover_in_flight(summary)
        self.progress.start("pushing tasks", await self.store.settling_due(due))
        while request_ids := await self.store.settled(due, self.settings.batch_size):
            tasks: list[RankingTask] = []
            empty = []
            for request_id in request_ids:
                found = await self.store.candidate_set(request_id)
                task = ranking_task(found.original, found.candidates, found.revisions)
                (tasks.append(task) if task is not None else empty.append(request_id))
            await self.store.unschedule(empty, "unrankable")
            summary.unrankable += len(empty)
            if self.layout == "pairwise":  # the layout shows two answers; more would be lost silently
                wide = [t for t in tasks if len(t.candidates) != 2]
                await self.store.unschedule([t.request_id for t in wide], "not_pairwise")
                summary.not_pairwise += len(wide)
                tasks = [t for t in tasks if len(t.candidates) == 2]
            known = await self.store.pushed_task_ids(self.project, [t.task_key for t in tasks])
            # Pushed by an earlier round (a late candidate, or an event delivered again): what annotators
            # see is not replaced.
            already = [t.request_id for t in tasks if t.task_key in known]
            await self.store.unschedule(already, "already_pushed")
            fresh = [t for t in tasks if t.task_key not in known]
            if fresh:
                await self._import_or_isolate(fresh, summary)
            self.progress.advance(len(request_ids))
            if self.lock is not None:
                await self.lock.refresh()  # a long backlog outlasts the lock's expiry otherwise
        await self._push_gold(summary)
        self.progress.finish()

    async def _push_gold(self, summary: SyncSummary) -> None:
        """Gold tasks, as many as keep them at ``gold_rate`` of every task pushed, after the real ones."""
        if not self._gold:
            return
        stats = await self.store.stats()
        done = stats.get("gold_pushed", 0)
        due = gold_due(stats.get("pushed", 0) - done, done, self.settings.gold_rate)
        tasks = [gold_task(self._gold[(done + i) % len(self._gold)], done + i) for i in range(due)]
        if self.layout == "pairwise":
            tasks = [t for t in tasks if len(t.candidates) == 2]
        known = await self.store.pushed_task_ids(self.project, [t.task_key for t in tasks])
        fresh = [t for t in tasks if t.task_key not in known]
        if fresh:
            before = summary.pushed
            await self._import_or_isolate(fresh, summary)
            summary.gold += summary.pushed - before
        if due:
            await self.store.count("gold_pushed", due)

    async def _import_or_isolate(self, tasks: list[RankingTask], summary: SyncSummary) -> None:
        """A task Label Studio refuses (400) must not hold up the others: a refused batch is sent again
        one task at a time, and a task refused alone is set aside with the reason."""
        try:
            await self._import(tasks, summary)
        except LabelStudioKeyRefused:
            raise
        except LabelStudioRefused as exc:
            # An earlier attempt of this batch may have made (and recorded) some of them.
            known = await self.store.pushed_task_ids(self.project, [t.task_key for t in tasks])
            tasks = [t for t in tasks if t.task_key not in known]
            if len(tasks) > 1:
                for task in tasks:
                    await self._import_or_isolate([task], summary)
                return
            if not tasks:
                return
            [task] = tasks
            log.error("Label Studio refused the task for request %s (%s); set aside", task.request_id, exc)
            await self.store.set_aside(self.project, task, str(exc))
            summary.refused += 1

    async def _import(self, tasks: list[RankingTask], summary: SyncSummary) -> None:
        await self.store.begin_import(self.project, tasks)
        first = True

        async def attempt() -> None:
            nonlocal first
            remaining = tasks
            if not first:  # the last attempt may have made some of them
                remaining = await self._drop_existing(tasks, summary)
            first = False
            if remaining:
                ids = await self.api.import_tasks(
                    self.project, [labelstudio_data(t, self.layout) for t in remaining]
                )
                await self.store.record_pushed(
                    self.project, list(zip(remaining, ids, strict=True)), self.retention_s
                )
                summary.pushed += len(remaining)

        await self._retrying("import tasks", attempt)

    async def _drop_existing(self, tasks: list[RankingTask], summary: SyncSummary) -> list[RankingTask]:
        """Tasks already in Label Studio are recorded as pushed; the others are returned."""
        existing = await self.api.find_tasks(self.project, [t.task_key for t in tasks])
        if existing:
            done = [(t, existing[t.task_key]) for t in tasks if t.task_key in existing]
            await self.store.record_pushed(self.project, done, self.retention_s)
            summary.recovered += len(done)
            log.info("%d tasks of an interrupted import were already in Label Studio", len(done))
        return [t for t in tasks if t.task_key not in existing]

    async def _recover_in_flight(self, summary: SyncSummary) -> None:
        """Keys an earlier run began to import and never recorded (it died mid-call)."""
        keys = await self.store.in_flight(self.project)
        if not keys:
            return
        log.info("checking %d tasks whose import was interrupted", len(keys))
        existing = await self._retrying("find tasks", lambda: self.api.find_tasks(self.project, keys))
        tasks = [t for t in [await self.store.task(k) for k in keys] if t is not None]
        done = [(t, existing[t.task_key]) for t in tasks if t.task_key in existing]
        await self.store.record_pushed(self.project, done, self.retention_s)
        summary.recovered += len(done)
        # The rest were never made: they are still settling, and go out with this round.
        await self.store.clear_in_flight(self.project, [k for k in keys if k not in existing])

    async def _poll(self, summary: SyncSummary) -> None:
        since = await self.store.watermark(self.project)
        self.progress.start("receiving annotations", None)
        newest = since

        async def attempt() -> None:
            nonlocal newest
            async for task in self.api.changed_tasks(self.project, since):
                summary.received += await self.receiver.reconcile(task, self.project)
                newest = max(newest or "", task["updated_at"])
                self.progress.advance()

        await self._retrying("poll annotations", attempt)
        if newest and newest != since:
            await self.store.set_watermark(self.project, newest)
        self.progress.finish()

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Retry while Label Studio is unavailable, with backoff, for up to ``retry_for_s``."""
        deadline = time.monotonic() + self.settings.retry_for_s
        delay = 0.5
        while True:
            try:
                return await call()
            except LabelStudioUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("%s: Label Studio unavailable (%s); retrying in %.1f s", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
