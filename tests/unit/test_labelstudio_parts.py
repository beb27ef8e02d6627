"""The Label Studio pieces that need no server: the config (checked by the SDK's own LabelInterface),
ranking tasks built from recorded events, and ranker results parsed in both of their shapes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from label_studio_sdk.label_interface import LabelInterface

from feedback.events import ChoiceReport, CompletionEvent, GuardrailsReport, GuardReport
from feedback.labelstudio.annotations import InvalidAnnotation, SkippedTask, parse_ranking, read_annotation
from feedback.labelstudio.config import DRAG_LINE, legacy_config, ranking_config
from feedback.labelstudio.tasks import labelstudio_data
from feedback.ranking import ranking_task, task_key, transcript


def _event(request_id: str, answers: list[str], **extra: Any) -> CompletionEvent:
    return CompletionEvent(
        id=request_id, completion_id=f"chatcmpl-{request_id}", created=0.0, tenant="acme", model="m",
        endpoint="chat.completions", stream=False,
        request={"messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Hi <PERSON>?"}]},
        choices=[{"index": i, "message": {"role": "assistant", "content": a}} for i, a in enumerate(answers)],
        **extra,
    )  # fmt: skip


def _ranker(
    value: dict[str, Any], from_name: str = "rank", to_name: str = "completions"
) -> list[dict[str, Any]]:
    return [{"from_name": from_name, "to_name": to_name, "type": "ranker", "value": {"ranker": value}}]


def test_every_layout_is_valid_for_label_studio_and_carries_the_instruction_line() -> None:
    buckets = LabelInterface(legacy_config())
    assert buckets.validate_annotation({"result": _ranker({"_": [], "best": ["A"], "worst": ["B"]})})
    assert not buckets.validate_annotation({"result": _ranker({"rank": ["a"]}, from_name="stars")})
    assert DRAG_LINE in ranking_config()
    assert ranking_config().count("<Header") == 1  # one heading
    pairwise = LabelInterface(ranking_config("pairwise"))
    choice = {"from_name": "pw", "to_name": "answer_a", "type": "pairwise", "value": {"selected": "left"}}
    assert pairwise.validate_annotation({"result": [choice]})
    assert "Harmless" in legacy_config()
    with pytest.raises(ValueError, match="layout"):
        ranking_config("carousel")


def test_a_task_gathers_every_answer_to_one_prompt() -> None:
    pii = GuardReport(guard="pii", action="redact", decision="redact")
    guarded = GuardrailsReport(output=[ChoiceReport(index=1, decision="redact", guards=[pii])])
    original = _event("req-1", ["Hello!", "Hi there."], guardrails=guarded)
    candidate = _event("req-1.0", ["Hey."], candidate_of="req-1", sampling={"temperature": 1.1})
    task = ranking_task(original, [candidate])
    assert task is not None
    data = labelstudio_data(task)
    assert data["conversation"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <PERSON>?"}
    ]  # fmt: skip
    assert data["prompt"] == "Hi <PERSON>?"  # the data manager's column: the question, short
    assert data["answers"] == 3
    assert [item["id"] for item in data["completions"]] == ["A", "B", "C"]
    by_body = {item["body"]: item["title"] for item in data["completions"]}
    assert by_body["Hi there."].endswith("pii: redact")  # the badge: a guard changed this answer
    assert re.fullmatch(r"Answer [ABC]", by_body["Hello!"])  # no guard fired: no badge
    assert "temperature" not in str(data)
    assert "req-1:" not in str(data)
    assert data["hhh_task_key"] == task_key("req-1") == task.task_key
    assert [c.redacted for c in task.candidates] == [False, True, False]
    assert task.request == original.request  # the export builds conversations from it
    # Without the original, the sampled candidates of one prompt still make a task, under its key.
    other = _event("req-1.1", ["Yo."], candidate_of="req-1", sampling={"temperature": 0.3})
    orphaned = ranking_task(None, [candidate, other])
    assert orphaned is not None
    assert orphaned.task_key == task.task_key
    assert ranking_task(_event("lonely", ["Only one."]), []) is None  # nothing to rank


def test_the_transcript_names_each_speaker_and_reads_only_the_text_of_content_parts() -> None:
    parts = [{"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "text", "text": "what is it?"}]  # fmt: skip
    request = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": parts}]}
    assert transcript(request) == "system: Be brief.\n\nuser: Look:\nwhat is it?"
    assert transcript({"messages": [{"content": None}]}) == "user: "
    assert transcript({"prompt": "Once upon a time"}) == "Once upon a time"


def test_an_unfinished_answer_is_not_ranked() -> None:
    cut = _event("req-3", ["Half an ans"], complete=False)
    whole = _event("req-3.0", ["A whole answer."], candidate_of="req-3")
    assert ranking_task(cut, [whole]) is None  # one whole answer only


def test_blocked_answers_are_shown_as_such() -> None:
    blocked = _event("req-2", ["x", "y"])
    blocked.choices[0]["message"] = {"role": "assistant", "content": None, "refusal": "Withheld by toxicity."}
    task = ranking_task(blocked, [])
    assert task is not None
    assert labelstudio_data(task)["completions"][0]["body"] == "[blocked] Withheld by toxicity."
    assert task.candidates[0].blocked
    assert not task.candidates[1].blocked


@pytest.mark.parametrize(
    ("value", "places"),
    [
        ({"rank": ["c", "a", "b"]}, [["c"], ["a"], ["b"]]),  # written through the API
        ({"_": ["b", "c", "a"]}, [["b"], ["c"], ["a"]]),  # written by the browser
    ],
)
def test_both_ranker_shapes_of_the_legacy_list(value: dict[str, Any], places: list[list[str]]) -> None:
    assert parse_ranking(_ranker(value), ["a", "b", "c"]).places == places


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (_ranker({"rank": ["a", "b"]}), "left unplaced: c"),  # c missing
        (_ranker({"rank": ["a", "b", "c", "a"]}), "every candidate once"),  # a twice
        (_ranker({"rank": ["a", "b", "x"]}), "every candidate once"),  # x is no candidate
        (_ranker({"rank": ["a", "b", "c"]}, to_name="prompt"), "must rank 'completions'"),
        (_ranker({}), "no 'ranker' value"),
        ([], "expected one 'rank' ranker"),
    ],
)
def test_invalid_rankings_are_rejected(result: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidAnnotation, match=message):
        parse_ranking(result, ["a", "b", "c"])


def _task(ids: list[str]) -> dict[str, Any]:
    return {"id": 11, "data": {"hhh_task_key": "key-1", "completions": [{"id": i} for i in ids]}}


def _annotation(result: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": 5, "result": result, "completed_by": 3, "created_at": "t0", "updated_at": "t1", **extra}


def test_an_annotation_becomes_a_record_for_the_export() -> None:
    checker = LabelInterface(legacy_config())
    record = read_annotation(
        _annotation(_ranker({"_": ["b", "a"]}), lead_time=4.2), _task(["a", "b"]), checker, 9
    )
    assert (record.task_key, record.annotation_id, record.ls_task_id, record.project) == ("key-1", 5, 11, 9)
    assert record.places == [["b"], ["a"]]
    assert record.annotator == "3"
    assert record.lead_time_s == 4.2
    by_user = _annotation(_ranker({"rank": ["a", "b"]}), completed_by={"id": 3, "email": "x@y"})
    nested = read_annotation(by_user, _task(["a", "b"]), checker, 9)
    assert nested.annotator == "x@y"


@pytest.mark.parametrize(
    ("annotation", "task", "message"),
    [
        (_annotation(_ranker({"rank": ["a", "b"]}, from_name="stars")), _task(["a", "b"]),
         "labelling config"),
        (_annotation([{"from_name": "rank", "to_name": "completions", "type": "choices",
                       "value": {"choices": ["a"]}}]), _task(["a", "b"]), "labelling config"),
        (_annotation(_ranker({"rank": ["a"]})), _task(["a", "b"]), "left unplaced: b"),
        (_annotation(_ranker({"rank": ["a", "b"]})), {"id": 1, "data": {}}, "not made by the gateway"),
        ({"result": _ranker({"rank": ["a", "b"]})}, _task(["a", "b"]), "valid id"),
        (_annotation("junk"), _task(["a", "b"]), "labelling config"),  # type: ignore[arg-type]
    ],
)  # fmt: skip
def test_annotations_that_do_not_fit_are_rejected_with_the_reason(
    annotation: dict[str, Any], task: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidAnnotation, match=message):
        read_annotation(annotation, task, LabelInterface(legacy_config()), 1)


def test_a_skipped_task_is_neither_stored_nor_rejected() -> None:
    with pytest.raises(SkippedTask):
        read_annotation(
            _annotation([], was_cancelled=True), _task(["a", "b"]), LabelInterface(legacy_config()), 1
        )
