"""`hhh feedback export` over a real Redis holding ranked tasks and users' feedback: every format loads
with `datasets` in its published layout, JSON lines and Parquet alike; prompts never straddle the split;
guarded answers are kept or dropped as asked; the card says what was done."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import pytest
import redis.asyncio
import yaml

from feedback.events import (
    ChoiceReport,
    CompletionEvent,
    FeedbackEvent,
    GuardrailsReport,
    GuardReport,
    encode_event,
)
from feedback.ranking import AnnotationRecord, ranking_task
from feedback.store import FeedbackStore
from tests.support.redis_server import redis_server

PROMPTS = 40


def _guardrails(answers: list[str]) -> GuardrailsReport:
    """The pii guard's report: it redacted the answers that name <PERSON>."""
    output = []
    for index, answer in enumerate(answers):
        decision = "redact" if "<PERSON>" in answer else "pass"
        pii = GuardReport(guard="pii", action="redact", decision=decision)
        output.append(ChoiceReport(index=index, decision=decision, guards=[pii]))
    return GuardrailsReport(policy="default", output=output)


def _event(request_id: str, answers: list[str], **extra: Any) -> CompletionEvent:
    return CompletionEvent(
        id=request_id, completion_id=f"chatcmpl-{request_id}", created=time.time(), tenant="t", model="m",
        endpoint="chat.completions", stream=False,
        request={"messages": [{"role": "system", "content": "Be kind."},
                              {"role": "user", "content": f"Question {request_id}: reply to <PERSON>?"}]},
        choices=[{"index": i, "message": {"role": "assistant", "content": a}, "finish_reason": "stop"}
                 for i, a in enumerate(answers)],
        guardrails=_guardrails(answers),
        **extra,
    )  # fmt: skip


async def _fill(url: str) -> None:
    """PROMPTS ranked tasks (two annotators each; they disagree on one in four), one task with a blocked
    answer, and a prompt with users' feedback only."""
    client = redis.asyncio.from_url(url)
    store = FeedbackStore(client)
    pushed = []
    for number in range(PROMPTS):
        event = _event(f"r{number}", [f"Gladly, {number}!", f"Fine. {number}", f"Go away {number}."])
        if number == 0:
            event.choices[1]["message"] = {"role": "assistant", "content": None, "refusal": "Withheld."}
            assert event.guardrails is not None
            assert event.guardrails.output
            event.guardrails.output[1].guards[0].decision = "block"
        if number == 1:
            event.choices[0]["message"]["content"] = "Hello <PERSON>, gladly!"
        await store.add_completion(event, encode_event(event), 0)
        task = ranking_task(event, [])
        assert task is not None
        pushed.append((task, 1000 + number))
        ids = [c.id for c in task.candidates]
        second = [ids[1], ids[0], ids[2]] if number % 4 == 0 else ids
        for annotation_id, (annotator, order) in enumerate([("ann", ids), ("bob", second)]):
            await store.save_annotation(AnnotationRecord(
                task_key=task.task_key, annotation_id=number * 10 + annotation_id, ls_task_id=1000 + number,
                project=7, annotator=annotator, places=[[i] for i in order],
                created_at="2026-01-01T00:00:00.000000Z", updated_at="2026-01-01T00:00:00.000000Z",
            ))  # fmt: skip
    await store.record_pushed(7, pushed)
    # Feedback only: the user preferred choice 1 of an n=2 answer.
    liked = _event("fb-only", ["Short.", "A fuller, kinder answer."])
    await store.add_completion(liked, encode_event(liked), 0)
    feedback = FeedbackEvent(
        id="fb-1", created=0.0, tenant="t", completion_id="chatcmpl-fb-only", preferred_choice=1
    )
    await store.add_feedback(feedback, encode_event(feedback))
    await client.aclose()


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("export")
    with redis_server(directory) as url:
        asyncio.run(_fill(url))
        config = directory / "gateway.yaml"
        config.write_text(yaml.safe_dump({"redis": {"url": url}, "data_dir": str(directory / "data")}))
        yield config


def _export(config: Path, out: Path, *options: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "feedback", "export", "--config", str(config), "--out", str(out),
         "--test-fraction", "0.25", *options],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


LAYOUTS = {
    "trl": {"prompt": "string", "chosen": "string", "rejected": "string"},
    "trl-conversational": {"prompt": "messages", "chosen": "messages", "rejected": "messages"},
    "openai-preference": {
        "input": "input",
        "preferred_output": "messages",
        "non_preferred_output": "messages",
    },
    "hh-rlhf": {"chosen": "string", "rejected": "string"},
}


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, list) and all(set(m) == {"role", "content"} for m in value):
        return "messages"
    if isinstance(value, dict) and set(value) == {"messages"}:
        return "input"
    return type(value).__name__


@pytest.mark.parametrize("fmt", list(LAYOUTS))
def test_every_format_loads_with_datasets_in_its_published_layout(
    fmt: str, filled: Path, tmp_path: Path
) -> None:
    out = tmp_path / fmt
    summary = _export(filled, out, "--format", fmt)
    assert "exported" in summary
    loaded = datasets.load_dataset(str(out))
    parquet = datasets.load_dataset(str(out / "parquet"))
    assert set(loaded) == {"train", "test"}
    for split in loaded:
        assert loaded[split].column_names == list(LAYOUTS[fmt])
        assert parquet[split].to_list() == loaded[split].to_list()
        for row in loaded[split]:
            assert {k: _kind(v) for k, v in row.items()} == LAYOUTS[fmt]
    rows = loaded["train"].to_list() + loaded["test"].to_list()
    text = json.dumps(rows)
    assert "Withheld." not in text  # blocked answers are left out by default
    assert "Hello <PERSON>" in text  # redacted ones kept, still redacted
    if fmt == "hh-rlhf":
        assert rows[0]["chosen"].startswith("\n\nHuman: Be kind.\n\nQuestion ")
        assert "\n\nAssistant: " in rows[0]["chosen"]
    if fmt == "openai-preference":
        assert rows[0]["input"]["messages"][0] == {"role": "system", "content": "Be kind."}
    if fmt.startswith("trl"):  # TRL's own reading of the rows
        from trl.data_utils import is_conversational

        assert is_conversational(rows[0]) == (fmt == "trl-conversational")
    # Which answer is chosen: both annotators rank "Go away" last, and the user preferred the fuller one.
    pairs = [_chosen_and_rejected(fmt, row) for row in rows]
    assert not [p for p in pairs if p[0].startswith("Go away")]
    assert sum(1 for c, r in pairs if c.startswith("Gladly") and r.startswith("Go away")) == 2 * (PROMPTS - 1)
    assert ("A fuller, kinder answer.", "Short.") in pairs


def _chosen_and_rejected(fmt: str, row: dict[str, Any]) -> tuple[str, str]:
    """The chosen and rejected answers' text, read the way each published format is meant to be read."""
    if fmt == "openai-preference":
        return row["preferred_output"][-1]["content"], row["non_preferred_output"][-1]["content"]
    if fmt == "trl-conversational":
        return row["chosen"][-1]["content"], row["rejected"][-1]["content"]
    if fmt == "hh-rlhf":  # the whole dialogue; the answer is what follows the last "Assistant: "
        return tuple(row[k].rpartition("\n\nAssistant: ")[2] for k in ("chosen", "rejected"))  # type: ignore[return-value]
    return row["chosen"], row["rejected"]


def test_pairs_aggregation_split_and_card(filled: Path, tmp_path: Path) -> None:
    out = tmp_path / "trl"
    summary = _export(filled, out, "--format", "trl", "--margin")
    meta = {split: [json.loads(line) for line in (out / "meta" / f"{split}.jsonl").open()]
            for split in ("train", "test")}  # fmt: skip
    train_prompts = {m["prompt_id"] for m in meta["train"]}
    test_prompts = {m["prompt_id"] for m in meta["test"]}
    assert train_prompts
    assert test_prompts
    assert not train_prompts & test_prompts  # no prompt on both sides
    everything = meta["train"] + meta["test"]
    # Per annotator: two annotators x C(3,2) pairs x PROMPTS, less the blocked answer's pairs (2 a
    # ranking), plus the one preferred-choice pair.
    assert len(everything) == 2 * 3 * PROMPTS - 2 * 2 + 1
    assert sum(1 for m in everything if m["source"] == "preferred_choice") == 1
    rows = datasets.load_dataset(str(out))["train"]
    assert rows.column_names == ["prompt", "chosen", "rejected", "margin"]
    assert "agreement: 91.7%" in summary  # one in four tasks: 1 of 3 pairs differs → 1 - 10/120
    card = (out / "README.md").read_text()
    for expected in ("project(s) 7", "Pairwise agreement: 91.7%", "| ann | 40 | 120 |", "`default` (",
                     "with a blocked answer", "Ties: no pair", "Answers a guard blocked (their text is the "
                     "gateway's refusal): excluded"):  # fmt: skip
        assert expected in card, expected

    fitted = tmp_path / "bradley-terry"
    _export(filled, fitted, "--aggregate", "bradley-terry", "--margin", "--sources", "rankings")
    fitted_rows = [json.loads(line) for path in (fitted / "meta").glob("*.jsonl") for line in path.open()]
    assert {r["source"] for r in fitted_rows} == {"bradley-terry"}
    # Every pair the fit orders: a 1-1 split leaves two answers equally strong (no pair), one task in
    # four; in task 0 that pair is the blocked answer's, whose other pair is dropped too.
    assert len(fitted_rows) == 3 * PROMPTS - PROMPTS // 4 - 1
    assert all(r["margin"] > 0 for r in fitted_rows)

    majority = tmp_path / "majority"
    _export(filled, majority, "--aggregate", "majority", "--blocked", "include", "--sources", "rankings")
    rows = [
        json.loads(line)
        for split in ("train", "test")
        for line in (majority / "meta" / f"{split}.jsonl").open()
    ]
    # One row per candidate pair with a majority: the disagreeing tasks tie 1-1 on one pair.
    assert len(rows) == 3 * PROMPTS - PROMPTS // 4
    assert {r["source"] for r in rows} == {"majority"}
    assert any("Withheld." in path.read_text() for path in (majority / "jsonl").glob("*.jsonl"))

    # Exported again into the same folder, with other options: `datasets` sees the new rows, not
    # the earlier export's (it caches a folder's data by file name).
    _export(filled, out, "--format", "trl", "--sources", "feedback", "--test-fraction", "0")
    again = datasets.load_dataset(str(out))
    assert list(again) == ["train"]
    prompt = "system: Be kind.\n\nuser: Question fb-only: reply to <PERSON>?"
    expected = {"prompt": prompt, "chosen": "A fuller, kinder answer.", "rejected": "Short."}
    assert again["train"].to_list() == [expected]


async def _record_only(url: str) -> None:
    """What a gateway with no Label Studio leaves: events in the stream, nothing filed."""
    client = redis.asyncio.from_url(url)
    answer = _event("thumbs", ["Kind and complete.", "Curt."])
    other = _event("thumbs.0", ["Rude."], candidate_of="thumbs", sampling={"temperature": 1.1})
    thumb = FeedbackEvent(
        id="fb-2", created=0.0, tenant="t", completion_id="chatcmpl-thumbs", preferred_choice=0
    )
    down = FeedbackEvent(id="fb-3", created=0.0, tenant="t", completion_id="chatcmpl-thumbs.0", rating="down")
    up = FeedbackEvent(
        id="fb-4", created=0.0, tenant="t", completion_id="chatcmpl-thumbs", preferred_choice=0, rating="up"
    )
    events = [("completion", answer), ("completion", other), ("feedback", thumb), ("feedback", down),
              ("feedback", up)]  # fmt: skip
    for kind, event in events:
        await client.xadd("hhh:events", {"kind": kind, "event": encode_event(event)})
    await client.aclose()


def test_users_feedback_is_exported_without_any_sync(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        asyncio.run(_record_only(url))
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump({"redis": {"url": url}, "data_dir": str(tmp_path / "data")}))
        out = tmp_path / "out"
        summary = _export(config, out, "--format", "trl", "--test-fraction", "0")
    assert "3 user feedback events" in summary
    rows = datasets.load_dataset(str(out))["train"].to_list()
    pairs = sorted((r["chosen"], r["rejected"]) for r in rows)
    # The preferred choice beats its sibling; the answer rated up beats the candidate rated down.
    assert pairs == [("Kind and complete.", "Curt."), ("Kind and complete.", "Rude.")]


def test_filters_by_tenant_and_by_number_of_annotators(filled: Path, tmp_path: Path) -> None:
    kept = _export(filled, tmp_path / "t", "--tenant", "t", "--min-annotators", "2", "--sources", "rankings")
    assert "exported 236 pairs" in kept  # every task has two annotators, all of tenant t
    for options in (["--tenant", "nobody"], ["--min-annotators", "3"]):
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "feedback", "export", "--config", str(filled), "--out",
             str(tmp_path / "none"), "--sources", "rankings", *options],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 1, options  # nothing to export is not a success
        assert "exported 0 pairs" in done.stdout
