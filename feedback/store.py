"""The feedback loop's state in Redis: candidate sets waiting to become tasks, the tasks pushed, the
annotations received, and the users' own feedback. The export reads it all from here.

Keys, under a prefix (``hhh:fb:``):

    set:<event id>            hash  "original" | "candidate:<event id>" → CompletionEvent JSON
    settling                  zset  event id → unix time at which its task may be pushed
    task:<task key>           str   RankingTask JSON, as pushed (what the export pairs up)
    ls:<project>:tasks        hash  task key → Label Studio task id (makes pushing idempotent)
    ls:<project>:inflight     hash  task key → unix time an import of it began
    ls:<project>:watermark    str   newest task ``updated_at`` the reconciling poll has seen
    ann:<task key>            hash  annotation id → AnnotationRecord JSON
    annotated                 set   task keys with at least one annotation
    annotation-tasks          hash  annotation id → task key (a deletion names only the annotation)
    rejected                  list  rejected annotations with the reason (newest first, capped)
    refused                   list  tasks Label Studio refused to import, with the reason
    rejected-ids              hash  "<annotation id>@<updated_at>" of those rejected, to count each once
    feedback                  hash  feedback id → FeedbackEvent JSON (thumbs, preferred choice)
    rev:<n>:<tenant>          hash  revision id → RevisionEvent JSON (AI feedback: answer and revision)
    rev-order:<n>:<tenant>    zset  revision id → its creation time: the oldest go beyond ``revisions_keep``
    rev-req:<n>:<tenant>/<id> set   the revision ids of that request (n>1: one a revised choice)
    rev-tenants               set   tenants with revisions, for the export
    completion-ids            hash  "<n>:<tenant>/<upstream completion id>" → "<set's event id> <event id>"
    request-ids               hash  "<n>:<tenant>/<x-request-id>" → the event id of that request's answer
    stats                     hash  running totals: pushed, received, updated, rejected, skipped, ...

Sets are keyed by the event id the gateway made, never by anything a client chose; what a client may
name (an upstream completion id, its x-request-id) is looked up under its own tenant only (``<n>`` is
the tenant name's length, which keeps the name unambiguous).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec
import redis.asyncio

from feedback.events import (
    CompletionEvent,
    FeedbackEvent,
    RevisionEvent,
    decode_event,
    decode_feedback,
    decode_revision,
)
from feedback.ranking import AnnotationRecord, RankingTask

ORIGINAL = "original"
REJECTED_KEEP = 10_000  # rejected annotations kept for inspection
REVISIONS_KEEP = 200_000  # revisions kept per tenant; the oldest go first


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _owner(tenant: str) -> str:
    """A tenant's name as part of a key; the length prefix keeps it unambiguous whatever it holds."""
    return f"{len(tenant)}:{tenant}"


def _owned(tenant: str, name: str) -> str:
    """A client-named id under its tenant."""
    return f"{_owner(tenant)}/{name}"


class CandidateSet(msgspec.Struct):
    request_id: str
    original: CompletionEvent | None
    candidates: list[CompletionEvent]
    revisions: list[RevisionEvent] = []  # AI feedback on this request: a revision is one more candidate


class FeedbackStore:
    def __init__(
        self, client: redis.asyncio.Redis, prefix: str = "hhh:fb:", revisions_keep: int = REVISIONS_KEEP
    ) -> None:
        # Typed loosely: redis-py's replies are declared bytes | str; this client always gives bytes.
        self.client: Any = client
        self.prefix = prefix
        self.revisions_keep = revisions_keep

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    # Candidate sets -----------------------------------------------------------------------------------

    async def add_completion(self, event: CompletionEvent, raw: bytes, settle_s: float) -> float:
        """File a completion under its prompt and (re)schedule the prompt's task; returns when it may go.

        The task may go at once when the original and every candidate it asked for are in; otherwise
        ``settle_s`` after this event (a failed candidate never arrives)."""
        request_id = event.candidate_of or event.id
        field = ORIGINAL if event.candidate_of is None else f"candidate:{event.id}"
        set_key = self.key("set", request_id)
        pipe: Any = self.client.pipeline(transaction=False)
        pipe.hset(set_key, field, raw)
        if event.completion_id:
            name = _owned(event.tenant, event.completion_id)
            pipe.hset(self.key("completion-ids"), name, f"{request_id} {event.id}")
        if event.request_id and event.candidate_of is None:
            pipe.hset(self.key("request-ids"), _owned(event.tenant, event.request_id), event.id)
        pipe.hkeys(set_key)
        pipe.hget(set_key, ORIGINAL)
        *_, fields, original_raw = await pipe.execute()
        now = time.time()
        due = now + settle_s
        if original_raw is not None:
            expected = decode_event(original_raw).candidates_requested
            if sum(1 for f in fields if f != ORIGINAL.encode()) >= expected:
                due = now
        await self.client.zadd(self.key("settling"), {request_id: due})
        return due

    async def settled(self, now: float, limit: int) -> list[str]:
        ids = await self.client.zrangebyscore(self.key("settling"), "-inf", now, start=0, num=limit)
        return [i.decode() for i in ids]

    async def settling_due(self, due: float) -> int:
        return int(await self.client.zcount(self.key("settling"), "-inf", due))

    async def settling_count(self) -> int:
        return int(await self.client.zcard(self.key("settling")))

    async def candidate_set(self, request_id: str) -> CandidateSet:
        fields = await self.client.hgetall(self.key("set", request_id))
        original = None
        candidates = []
        for name, raw in sorted(fields.items()):
            event = decode_event(raw)
            if name == ORIGINAL.encode():
                original = event
            else:
                candidates.append(event)
        head = original or (candidates[0] if candidates else None)
        revisions = [] if head is None else await self.request_revisions(head.tenant, request_id)
        return CandidateSet(request_id, original, candidates, revisions)

    async def unschedule(self, request_ids: Iterable[str], reason: str) -> None:
        """Prompts that will get no task (fewer than two answers); their events stay for the export."""
        ids = list(request_ids)
        if ids:
            pipe: Any = self.client.pipeline(transaction=False)
            pipe.zrem(self.key("settling"), *ids)
            pipe.hincrby(self.key("stats"), reason, len(ids))
            await pipe.execute()

    # Label Studio tasks ------------------------------------------------------------------------------

    async def pushed_task_ids(self, project: int, task_keys: list[str]) -> dict[str, int]:
        if not task_keys:
            return {}
        ids = await self.client.hmget(self.key("ls", project, "tasks"), task_keys)
        return {k: int(i) for k, i in zip(task_keys, ids, strict=True) if i is not None}

    async def begin_import(self, project: int, tasks: list[RankingTask]) -> None:
        """Written before an import: if the call's fate is unknown, these are looked up in Label Studio."""
        now = time.time()
        pipe: Any = self.client.pipeline(transaction=True)
        for task in tasks:
            pipe.set(self.key("task", task.task_key), msgspec.json.encode(task))
        pipe.hset(self.key("ls", project, "inflight"), mapping={t.task_key: now for t in tasks})
        await pipe.execute()

    async def in_flight(self, project: int) -> list[str]:
        return [k.decode() for k in await self.client.hkeys(self.key("ls", project, "inflight"))]

    async def clear_in_flight(self, project: int, task_keys: list[str]) -> None:
        if task_keys:
            await self.client.hdel(self.key("ls", project, "inflight"), *task_keys)

    async def record_pushed(
        self, project: int, pushed: list[tuple[RankingTask, int]], retention_s: float | None = None
    ) -> None:
        """Tasks now in Label Studio (``(task, Label Studio id)``): remembered, and no longer settling."""
        if not pushed:
            return
        pipe: Any = self.client.pipeline(transaction=True)
        pipe.hset(self.key("ls", project, "tasks"), mapping={t.task_key: ls_id for t, ls_id in pushed})
        pipe.hincrby(self.key("stats"), "pushed", len(pushed))
        for task, _ in pushed:
            pipe.set(self.key("task", task.task_key), msgspec.json.encode(task))
            if retention_s:
                pipe.expire(self.key("set", task.request_id), int(retention_s))
        pipe.zrem(self.key("settling"), *[t.request_id for t, _ in pushed])
        pipe.hdel(self.key("ls", project, "inflight"), *[t.task_key for t, _ in pushed])
        await pipe.execute()

    async def set_aside(self, project: int, task: RankingTask, reason: str) -> None:
        """A task Label Studio refused: kept with the reason, no longer settling or in flight."""
        entry = msgspec.json.encode({"at": time.time(), "reason": reason, "task": task})
        pipe: Any = self.client.pipeline(transaction=True)
        pipe.rpush(self.key("refused"), entry)
        pipe.zrem(self.key("settling"), task.request_id)
        pipe.hdel(self.key("ls", project, "inflight"), task.task_key)
        pipe.hincrby(self.key("stats"), "refused", 1)
        await pipe.execute()

    async def task(self, task_key: str) -> RankingTask | None:
        raw = await self.client.get(self.key("task", task_key))
        return None if raw is None else msgspec.json.decode(raw, type=RankingTask)

    async def watermark(self, project: int) -> str | None:
        return _text(await self.client.get(self.key("ls", project, "watermark")))

    async def set_watermark(self, project: int, value: str) -> None:
        await self.client.set(self.key("ls", project, "watermark"), value)

    # Annotations ---------------------------------------------------------------------------------------

    async def save_annotation(self, record: AnnotationRecord) -> str:
        """Returns "new", "updated" or "same": webhook and poll may both deliver one annotation."""
        key = self.key("ann", record.task_key)
        field = str(record.annotation_id)
        encoded = msgspec.json.encode(record)
        outcome = "new"
        if not await self.client.hsetnx(key, field, encoded):  # atomic: a new one is counted once
            known = await self.client.hget(key, field)
            previous = msgspec.json.decode(known, type=AnnotationRecord)
            if previous.updated_at >= record.updated_at:
                return "same"
            await self.client.hset(key, field, encoded)
            outcome = "updated"
        pipe: Any = self.client.pipeline(transaction=False)
        pipe.sadd(self.key("annotated"), record.task_key)
        pipe.hset(self.key("annotation-tasks"), field, record.task_key)
        pipe.hincrby(self.key("stats"), "received" if outcome == "new" else "updated", 1)
        await pipe.execute()
        return outcome

    async def delete_annotation(self, task_key: str, annotation_id: int) -> bool:
        key = self.key("ann", task_key)
        removed = bool(await self.client.hdel(key, str(annotation_id)))
        await self.client.hdel(self.key("annotation-tasks"), str(annotation_id))
        if removed:
            await self.client.hincrby(self.key("stats"), "deleted", 1)
            if not await self.client.hlen(key):
                await self.client.srem(self.key("annotated"), task_key)
        return removed

    async def task_key_of_annotation(self, annotation_id: int) -> str | None:
        return _text(await self.client.hget(self.key("annotation-tasks"), str(annotation_id)))

    async def annotations(self, task_key: str) -> list[AnnotationRecord]:
        raw = await self.client.hgetall(self.key("ann", task_key))
        return [msgspec.json.decode(v, type=AnnotationRecord) for v in raw.values()]

    async def annotated_tasks(
        self, task_keys: list[str], chunk: int = 500
    ) -> AsyncIterator[tuple[str, RankingTask | None, list[AnnotationRecord]]]:
        """Each task with its annotations, read ``chunk`` tasks a round trip (an export reads them all)."""
        for start in range(0, len(task_keys), chunk):
            keys = task_keys[start : start + chunk]
            pipe: Any = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.get(self.key("task", key))
                pipe.hgetall(self.key("ann", key))
            replies = await pipe.execute()
            for index, key in enumerate(keys):
                raw_task, raw_annotations = replies[2 * index], replies[2 * index + 1]
                task = None if raw_task is None else msgspec.json.decode(raw_task, type=RankingTask)
                records = [msgspec.json.decode(v, type=AnnotationRecord) for v in raw_annotations.values()]
                yield key, task, records

    async def annotated_task_keys(self) -> list[str]:
        return sorted(k.decode() for k in await self.client.smembers(self.key("annotated")))

    async def reject(self, reason: str, payload: Any, identity: str | None = None) -> bool:
        """Keep a rejected annotation for inspection; ``identity`` (id and version) counts it once, as the
        poll sees an annotation again every time its task changes. False: already rejected."""
        if identity is not None and not await self.client.hsetnx(self.key("rejected-ids"), identity, 1):
            return False
        entry = msgspec.json.encode({"at": time.time(), "reason": reason, "payload": payload})
        pipe: Any = self.client.pipeline(transaction=False)
        pipe.lpush(self.key("rejected"), entry)
        pipe.ltrim(self.key("rejected"), 0, REJECTED_KEEP - 1)
        pipe.hincrby(self.key("stats"), "rejected", 1)
        await pipe.execute()
        return True

    async def count(self, name: str, amount: int = 1) -> None:
        await self.client.hincrby(self.key("stats"), name, amount)

    # Users' own feedback --------------------------------------------------------------------------------

    async def add_feedback(self, event: FeedbackEvent, raw: bytes) -> None:
        await self.client.hset(self.key("feedback"), event.id, raw)

    async def feedback_events(self) -> list[FeedbackEvent]:
        raw = await self.client.hgetall(self.key("feedback"))
        return [decode_feedback(v) for v in raw.values()]

    async def locate_completion(self, tenant: str, completion_id: str) -> tuple[str, str] | None:
        """(set's event id, event id) of ``tenant``'s recorded completion, by the upstream's completion id
        or the x-request-id. Another tenant's completion is not found: it is as unknown as a made-up id."""
        name = _owned(tenant, completion_id)
        pipe: Any = self.client.pipeline(transaction=False)
        pipe.hget(self.key("completion-ids"), name)
        pipe.hget(self.key("request-ids"), name)
        pipe.hget(self.key("completion-ids"), completion_id)  # recorded before ids were per tenant
        by_completion, by_request, legacy = await pipe.execute()
        if by_completion is not None or legacy is not None:
            set_id, _, event_id = (by_completion or legacy).decode().partition(" ")
            return set_id, event_id
        if by_request is not None:
            return by_request.decode(), by_request.decode()
        return None

    # AI feedback (revisions) ----------------------------------------------------------------------------

    async def add_revision(self, event: RevisionEvent, raw: bytes) -> None:
        """File a revision under its tenant (idempotent); beyond ``revisions_keep`` a tenant's oldest go."""
        owner = _owner(event.tenant)
        order = self.key("rev-order", owner)
        pipe: Any = self.client.pipeline(transaction=False)
        pipe.hset(self.key("rev", owner), event.id, raw)
        pipe.zadd(order, {event.id: event.created})
        pipe.sadd(self.key("rev-req", _owned(event.tenant, event.request_id)), event.id)
        pipe.sadd(self.key("rev-tenants"), event.tenant)
        pipe.zcard(order)
        *_, size = await pipe.execute()
        if size > self.revisions_keep:
            await self._forget_revisions(event.tenant, size - self.revisions_keep)

    async def _forget_revisions(self, tenant: str, count: int) -> None:
        """The tenant's ``count`` oldest revisions go, with their request index entries."""
        owner = _owner(tenant)
        gone = [member for member, _ in await self.client.zpopmin(self.key("rev-order", owner), count)]
        if not gone:
            return
        raws = await self.client.hmget(self.key("rev", owner), gone)
        await self.client.hdel(self.key("rev", owner), *gone)
        for raw in raws:
            if raw is None:
                continue
            revision = decode_revision(raw)
            await self.client.srem(self.key("rev-req", _owned(tenant, revision.request_id)), revision.id)

    async def revision_tenants(self) -> list[str]:
        return sorted(t.decode() for t in await self.client.smembers(self.key("rev-tenants")))

    async def revisions(self, tenant: str) -> list[RevisionEvent]:
        """A tenant's revisions, oldest first."""
        raw = await self.client.hgetall(self.key("rev", _owner(tenant)))
        return sorted((decode_revision(v) for v in raw.values()), key=lambda r: (r.created, r.id))

    async def request_revisions(self, tenant: str, request_id: str) -> list[RevisionEvent]:
        """The revisions of ``tenant``'s request (each revised choice's), oldest first."""
        ids = sorted(await self.client.smembers(self.key("rev-req", _owned(tenant, request_id))))
        if not ids:
            return []
        raws = await self.client.hmget(self.key("rev", _owner(tenant)), ids)
        found = [decode_revision(raw) for raw in raws if raw is not None]
        return sorted(found, key=lambda r: (r.created, r.id))

    async def stats(self) -> dict[str, int]:
        raw = await self.client.hgetall(self.key("stats"))
        return {k.decode(): int(v) for k, v in raw.items()}
