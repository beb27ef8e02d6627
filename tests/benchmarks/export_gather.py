"""Reading ranked tasks for an export: the pipelined read `hhh feedback export` uses vs two round trips
a task (the baseline), in the same run, on a real redis-server. Writes results/export_gather.md.

    .venv/bin/python -m tests.benchmarks.export_gather [--tasks 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio

from feedback.preferences.aggregate import aggregate
from feedback.preferences.export import ExportOptions, gather
from feedback.ranking import AnnotationRecord, Candidate, RankingTask
from feedback.store import FeedbackStore
from tests.support.redis_server import redis_server

RESULTS = Path(__file__).parent / "results" / "export_gather.md"


async def _fill(store: FeedbackStore, tasks: int) -> None:
    """Each task: 3 answers, ranked by 2 annotators."""
    pipe: Any = store.client.pipeline(transaction=False)
    for i in range(tasks):
        task = RankingTask(
            task_key=f"k{i}", request_id=f"r{i}", tenant="t", model="m", endpoint="chat.completions",
            created=0.0, request={"messages": [{"role": "user", "content": f"question {i}"}]},
            prompt=f"question {i}",
            candidates=[Candidate(id=f"r{i}:{j}", text=f"answer {i}.{j}", model="m", origin="answer")
                        for j in range(3)],
        )  # fmt: skip
        pipe.set(store.key("task", task.task_key), msgspec.json.encode(task))
        for a in range(2):
            record = AnnotationRecord(
                task_key=task.task_key, annotation_id=2 * i + a, ls_task_id=i, project=1, annotator=f"u{a}",
                places=[[f"r{i}:{j}"] for j in range(3)], created_at="t", updated_at="t",
            )  # fmt: skip
            pipe.hset(store.key("ann", task.task_key), str(record.annotation_id), msgspec.json.encode(record))
        pipe.sadd(store.key("annotated"), task.task_key)
        if i % 1000 == 999:
            await pipe.execute()
            pipe = store.client.pipeline(transaction=False)
    await pipe.execute()


async def _baseline(store: FeedbackStore) -> int:
    """The same reading and pairing, two round trips a task."""
    pairs = 0
    for key in await store.annotated_task_keys():
        task = await store.task(key)
        records = await store.annotations(key)
        if task is not None:
            pairs += len(aggregate([(r.annotator, r.places) for r in records], "none"))
    return pairs


async def _run(tasks: int) -> str:
    with tempfile.TemporaryDirectory() as directory, redis_server(Path(directory)) as url:
        client = redis.asyncio.from_url(url)
        store = FeedbackStore(client)
        await _fill(store, tasks)
        start = time.perf_counter()
        baseline_pairs = await _baseline(store)
        baseline_s = time.perf_counter() - start
        start = time.perf_counter()
        gathered = await gather(store, ExportOptions(sources=("rankings",)))
        pipelined_s = time.perf_counter() - start
        await client.aclose()
    assert len(gathered.pairs) == baseline_pairs
    return "\n".join(
        [
            "# Export: reading ranked tasks from Redis\n",
            f"{tasks} tasks of 3 answers, 2 annotators each: {baseline_pairs} pairs. "
            f"{platform.processor() or platform.machine()}, {platform.python_version()}.\n",
            "| read | seconds | tasks/s |",
            "|---|---|---|",
            f"| two round trips a task, pairing only (baseline) | {baseline_s:.2f} | "
            f"{tasks / baseline_s:,.0f} |",
            f"| pipelined, 500 tasks a round trip (`gather`, with hygiene) | {pipelined_s:.2f} | "
            f"{tasks / pipelined_s:,.0f} |",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20000)
    report = asyncio.run(_run(parser.parse_args().tasks))
    RESULTS.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
