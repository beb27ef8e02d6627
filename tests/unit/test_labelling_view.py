"""The labelling view's guarantees, without a server: the shuffled, lettered answers and their mapping
back, bucket results (the browser's "_" column, ties, answers left unplaced), the pairwise layout, old
tasks still read, gold tasks and their scoring, and position bias found in simulated annotators."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from label_studio_sdk.label_interface import LabelInterface

from feedback.labelstudio.annotations import InvalidAnnotation, parse_ranking, read_annotation
from feedback.labelstudio.config import legacy_config, ranking_config
from feedback.labelstudio.gold import gold_due, gold_task, load_gold
from feedback.labelstudio.settings import LabelStudioSettings
from feedback.labelstudio.tasks import badge, conversation, labelstudio_data, letters_to_ids, shown_candidates
from feedback.preferences.quality import annotator_quality, first_shown_score, gold_correct
from feedback.ranking import AnnotationRecord, Candidate, RankingTask

BUCKETS = ("Best", "Good", "Poor", "Worst")


def _task(key: str, k: int = 3, flags: dict[int, list[str]] | None = None) -> RankingTask:
    candidates = [
        Candidate(id=f"ev-{key}:{i}", text=f"answer number {i}", model="m", origin="answer" if i == 0 else
                  "candidate", flags=(flags or {}).get(i, []))
        for i in range(k)
    ]  # fmt: skip
    return RankingTask(
        task_key=key, request_id=f"r-{key}", tenant="t", model="m", endpoint="chat.completions", created=0.0,
        request={"messages": [{"role": "user", "content": "Name a colour."}]}, prompt="user: Name a colour.",
        candidates=candidates,
    )  # fmt: skip


def _ranker(value: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"from_name": "rank", "to_name": "completions", "type": "ranker", "value": {"ranker": value}}]


def _order(task: RankingTask) -> tuple[str, ...]:
    return tuple(c.id.rsplit(":", 1)[1] for c in shown_candidates(task))


def test_the_shown_order_is_fixed_by_the_task_whatever_order_the_gateway_built() -> None:
    task = _task("key-1", 5)
    again = _task("key-1", 5)
    again.candidates.reverse()  # a re-sync that rebuilt the candidates in another order
    assert _order(task) == _order(again) == _order(_task("key-1", 5))
    assert labelstudio_data(task) == labelstudio_data(again)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_every_order_is_reachable_and_the_original_answer_is_not_favoured(k: int) -> None:
    orders = [_order(_task(f"key-{n}", k)) for n in range(120 * k * k)]
    assert set(orders) == set(itertools.permutations(str(i) for i in range(k)))
    first = sum(order[0] == "0" for order in orders) / len(orders)  # the client's answer shown as A
    assert abs(first - 1 / k) < 0.08


def test_letters_map_back_to_the_gateways_candidates_and_nothing_else_leaks() -> None:
    task = _task("key-9", 4)
    data = labelstudio_data(task)
    mapping = letters_to_ids(task)
    assert [item["id"] for item in data["completions"]] == ["A", "B", "C", "D"]
    assert [mapping[item["id"]] for item in data["completions"]] == [c.id for c in shown_candidates(task)]
    assert {item["body"] for item in data["completions"]} == {c.text for c in task.candidates}
    assert "ev-key-9" not in json.dumps(data)  # the ids that gave the order away are not sent


def test_the_badge_shows_only_what_a_guard_changed_or_flagged() -> None:
    task = _task("key-2", 3, flags={1: ["pii: redact"], 2: ["no guard report"]})
    titles = {item["body"]: item["title"] for item in labelstudio_data(task)["completions"]}
    assert titles["answer number 1"].endswith("⚠ pii: redact")
    assert "⚠" not in titles["answer number 0"]
    assert "⚠" not in titles["answer number 2"]
    assert badge(Candidate(id="x", text="", model="m", origin="revision",
                           flags=["not checked by the guards (offline revision)"])) == ""  # fmt: skip


def test_the_conversation_is_shown_as_turns_with_tool_calls_named() -> None:
    request = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "forecast"}}]},
        {"role": "tool", "content": "Sunny."},
    ]}  # fmt: skip
    assert conversation(request) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "[calls forecast]"}, {"role": "tool", "content": "Sunny."},
    ]  # fmt: skip
    assert conversation({"prompt": "Once"}) == [{"role": "prompt", "content": "Once"}]


@pytest.mark.parametrize(
    ("value", "places"),
    [
        ({"_": [], "best": ["A"], "good": ["B"], "poor": [], "worst": ["C"]}, [["A"], ["B"], ["C"]]),
        ({"_": [], "best": ["A", "C"], "worst": ["B"]}, [["A", "C"], ["B"]]),  # a tie in one bucket
        ({"best": ["A", "B", "C"]}, [["A", "B", "C"]]),  # all tied: a judgement, no pair by default
    ],
)
def test_buckets_become_places_and_one_bucket_is_a_tie(
    value: dict[str, Any], places: list[list[str]]
) -> None:
    assert parse_ranking(_ranker(value), ["A", "B", "C"], BUCKETS).places == places


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([], "left unplaced: A, B, C"),  # submitted untouched: no result at all
        (_ranker({"_": ["A", "B", "C"]}), "left unplaced: A, B, C"),  # untouched, the browser's shape
        (_ranker({"_": ["C"], "best": ["A"], "worst": ["B"]}), "left unplaced: C"),
        (_ranker({"best": ["A", "A"], "worst": ["B", "C"]}), "every candidate once"),
        (_ranker({"best": ["A"], "mediocre": ["B", "C"]}), "unknown buckets"),
        (_ranker({"best": "A"}), "must be a list"),
    ],
)
def test_lazy_or_malformed_bucket_results_are_rejected(result: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidAnnotation, match=message):
        parse_ranking(result, ["A", "B", "C"], BUCKETS)


def _ls_task(task: RankingTask, layout: str = "buckets") -> dict[str, Any]:
    return {"id": 11, "data": labelstudio_data(task, layout)}


def _annotation(result: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": 5, "result": result, "completed_by": {"id": 3, "email": "ann@example.com"}}


def test_a_bucket_annotation_is_stored_in_candidate_ids_with_the_order_shown() -> None:
    task = _task("key-3", 3)
    letters = letters_to_ids(task)
    result = _ranker({"_": [], "best": ["B"], "good": ["A", "C"], "poor": [], "worst": []})
    record = read_annotation(_annotation(result), _ls_task(task), LabelInterface(ranking_config()), 1, task)
    assert record.places == [[letters["B"]], [letters["A"], letters["C"]]]
    assert record.shown == [c.id for c in shown_candidates(task)]
    with pytest.raises(InvalidAnnotation, match="does not know this task"):
        read_annotation(_annotation(result), _ls_task(task), LabelInterface(ranking_config()), 1, None)


def test_the_pairwise_layout_reads_left_as_answer_a() -> None:
    task = _task("key-4", 2)
    data = labelstudio_data(task, "pairwise")
    first, second = (c.id for c in shown_candidates(task))
    assert data["label_a"] == "Answer A"
    assert data["answer_a"] == shown_candidates(task)[0].text
    checker = LabelInterface(ranking_config("pairwise"))
    right = [{"from_name": "pw", "to_name": "answer_a", "type": "pairwise", "value": {"selected": "right"}}]
    record = read_annotation(_annotation(right), {"id": 1, "data": data}, checker, 1, task)
    assert record.places == [[second], [first]]
    # The browser names the Pairwise tag itself as ``to_name``; it is read the same.
    browser = [{"from_name": "pw", "to_name": "pw", "type": "pairwise", "value": {"selected": "left"}}]
    assert read_annotation(_annotation(browser), {"id": 1, "data": data}, checker, 1, task).places == [
        [first], [second]
    ]  # fmt: skip
    with pytest.raises(InvalidAnnotation, match="no answer was chosen"):
        read_annotation(_annotation([]), {"id": 1, "data": data}, checker, 1, task)
    with pytest.raises(ValueError, match="two answers"):
        labelstudio_data(_task("key-5", 3), "pairwise")


def test_old_tasks_of_the_single_list_layout_are_still_read() -> None:
    old = {"id": 2, "data": {"hhh_task_key": "key-6", "prompt": "user: x",
                             "completions": [{"id": "ev:0"}, {"id": "ev:1"}]}}  # fmt: skip
    record = read_annotation(
        _annotation(_ranker({"_": ["ev:1", "ev:0"]})), old, LabelInterface(legacy_config()), 1
    )
    assert record.places == [["ev:1"], ["ev:0"]]
    assert record.shown == ["ev:0", "ev:1"]  # as listed: position bias is measured on old tasks too
    # New tasks pushed to a project that kept the old config: letters, mapped back.
    task = _task("key-7", 2)
    data = labelstudio_data(task, "legacy")
    assert "hhh_layout" not in data
    assert data["prompt"] == task.prompt
    record = read_annotation(_annotation(_ranker({"_": ["B", "A"]})), {"id": 3, "data": data},
                             LabelInterface(legacy_config()), 1, task)  # fmt: skip
    letters = letters_to_ids(task)
    assert record.places == [[letters["B"]], [letters["A"]]]


def _record(annotator: str, places: list[list[str]], shown: list[str] | None, n: int = 0) -> AnnotationRecord:
    return AnnotationRecord(
        task_key=f"k{n}", annotation_id=n, ls_task_id=n, project=1, annotator=annotator, places=places,
        created_at="", updated_at="", shown=shown,
    )  # fmt: skip


def test_gold_answers_are_scored_strictly() -> None:
    assert gold_correct([["g"], ["a"]], "g")
    assert not gold_correct([["g", "a"]], "g")  # a tie with a worse answer is not knowing the best
    assert not gold_correct([["a"], ["g"]], "g")
    gold = gold_task(load_gold_item(), 0)
    best = gold.gold
    assert best is not None
    others = [c.id for c in gold.candidates if c.id != best]
    ranked = [(gold, [_record("good", [[best], others], None, 1), _record("bad", [others, [best]], None, 2)])]
    quality = annotator_quality(ranked)
    assert (quality["good"].gold_tasks, quality["good"].gold_accuracy) == (1, 1.0)
    assert quality["bad"].gold_accuracy == 0.0


def load_gold_item() -> Any:
    from feedback.labelstudio.gold import GoldItem

    return GoldItem(id="capital", messages=[{"role": "user", "content": "Capital of France?"}],
                    answers=["Paris.", "Lyon.", "Nice."], best=0)  # fmt: skip


def test_gold_tasks_are_mixed_in_at_the_rate_and_look_like_any_other(tmp_path: Path) -> None:
    assert [gold_due(real, 0, 0.1) for real in (0, 8, 9, 18)] == [0, 0, 1, 2]
    assert gold_due(18, 2, 0.1) == 0
    assert gold_due(100, 0, 0.0) == 0
    first, again = gold_task(load_gold_item(), 0), gold_task(load_gold_item(), 1)
    assert first.task_key != again.task_key  # one item can come round again as a task of its own
    data = labelstudio_data(first)
    assert "gold" not in json.dumps(data["completions"])
    assert "gold" not in json.dumps(data["conversation"])
    path = tmp_path / "gold.jsonl"
    path.write_text('{"id": "a", "prompt": "p", "answers": ["x", "y"], "best": 1}\n\n'
                    '{"id": "b", "prompt": "p", "answers": ["x"], "best": 0}\n')  # fmt: skip
    with pytest.raises(ValueError, match=r"line 3: .*answers"):
        load_gold(path)


def test_settings_name_the_key_of_a_bad_layout_or_bucket_list() -> None:
    with pytest.raises(ValueError, match="layout"):
        LabelStudioSettings(layout="carousel")
    with pytest.raises(ValueError, match="buckets"):
        LabelStudioSettings(buckets=["Only"])
    with pytest.raises(ValueError, match="buckets"):
        LabelStudioSettings(buckets=["Good", "good"])
    with pytest.raises(ValueError, match="gold_file"):
        LabelStudioSettings(gold_rate=0.1)


def _simulate(annotator: str, prefers_first: float, tasks: int, rng: random.Random) -> list[AnnotationRecord]:
    """An annotator who, with probability ``prefers_first``, ranks the answer shown first best whatever it
    says, and otherwise ranks by the answers' hidden quality (which has nothing to do with position)."""
    records = []
    for n in range(tasks):
        task = _task(f"{annotator}-{n}", rng.choice([2, 3, 4]))
        shown = [c.id for c in shown_candidates(task)]
        by_quality = sorted(shown, key=lambda _: rng.random())
        if rng.random() < prefers_first:
            by_quality.remove(shown[0])
            by_quality.insert(0, shown[0])
        records.append(_record(annotator, [[c] for c in by_quality], shown, n))
    return records


def test_position_bias_is_found_in_an_annotator_who_prefers_the_first_answer() -> None:
    rng = random.Random(7)
    biased = _simulate("biased", 0.6, 60, rng)
    fair = _simulate("fair", 0.0, 60, rng)
    quality = annotator_quality([(_task(f"t{r.annotation_id}"), [r]) for r in biased + fair])
    assert quality["biased"].position_biased
    assert quality["biased"].first_shown_rate is not None
    assert quality["biased"].first_shown_rate > 0.6
    assert not quality["fair"].position_biased
    assert abs(quality["fair"].bias_z or 0.0) < 3
    # Too few rankings to tell: not reported as bias, however lopsided.
    few = annotator_quality([(_task("few"), _simulate("few", 1.0, 5, rng))])
    assert not few["few"].position_biased
    assert first_shown_score([["a", "b"], ["c"]], ["a", "b", "c"]) == 0.5
