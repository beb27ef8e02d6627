"""Rankings to pairs: K = 2…9, ties and buckets, several annotators (per annotator, majority,
Bradley-Terry), agreement, both ranker shapes, and users' feedback."""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedback.events import FeedbackEvent
from feedback.labelstudio.annotations import parse_ranking
from feedback.preferences.aggregate import aggregate, bradley_terry_strengths, majority
from feedback.preferences.agreement import agreement
from feedback.preferences.formats import dataset_prompt, messages_of
from feedback.preferences.pairs import ranking_pairs
from feedback.preferences.user_feedback import feedback_comparisons
from feedback.ranking import Candidate, RankingTask


def _ids(k: int) -> list[str]:
    return [f"c{i}" for i in range(k)]


@pytest.mark.parametrize("k", range(2, 10))
def test_a_ranking_of_k_gives_k_choose_2_pairs_best_over_worse(k: int) -> None:
    order = _ids(k)[::-1]  # any order: c(k-1) best
    pairs = ranking_pairs([[c] for c in order])
    assert len(pairs) == math.comb(k, 2)
    position = {c: i for i, c in enumerate(order)}
    assert all(position[p.chosen] < position[p.rejected] for p in pairs)
    assert {frozenset((p.chosen, p.rejected)) for p in pairs} == {
        frozenset(x) for x in combinations(order, 2)
    }
    assert all(p.margin == position[p.rejected] - position[p.chosen] for p in pairs)


@given(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=5))
def test_buckets_give_pairs_across_places_only_unless_ties_are_asked_for(sizes: list[int]) -> None:
    places, n = [], 0
    for size in sizes:
        places.append([f"c{n + i}" for i in range(size)])
        n += size
    within = sum(math.comb(s, 2) for s in sizes)
    assert len(ranking_pairs(places)) == math.comb(n, 2) - within
    with_ties = ranking_pairs(places, ties=True)
    assert len(with_ties) == math.comb(n, 2)
    assert sum(1 for p in with_ties if p.margin == 0) == within


def _ranker(value: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"from_name": "rank", "to_name": "completions", "type": "ranker", "value": {"ranker": value}}]


def test_both_ranker_shapes_give_the_same_pairs() -> None:
    ids = ["a", "b", "c"]
    from_api = parse_ranking(_ranker({"rank": ["b", "a", "c"]}), ids).places
    from_browser = parse_ranking(_ranker({"_": ["b", "a", "c"]}), ids).places
    assert ranking_pairs(from_api) == ranking_pairs(from_browser)
    bucketed = parse_ranking(_ranker({"best": ["b"], "ok": ["a", "c"]}), ids, ["Best", "OK"]).places
    assert [(p.chosen, p.rejected) for p in ranking_pairs(bucketed)] == [("b", "a"), ("b", "c")]


THREE = [("ann", [["a"], ["b"], ["c"]]), ("bob", [["a"], ["c"], ["b"]]), ("cy", [["b"], ["a"], ["c"]])]


def test_per_annotator_keeps_everyone_and_names_them() -> None:
    pairs = aggregate(THREE, "none")
    assert len(pairs) == 9
    assert {p.annotator for p in pairs} == {"ann", "bob", "cy"}


def test_majority_takes_the_side_more_annotators_chose() -> None:
    pairs = {(p.chosen, p.rejected): p.margin for p in aggregate(THREE, "majority")}
    assert pairs == {("a", "b"): pytest.approx(1 / 3), ("a", "c"): 1.0, ("b", "c"): pytest.approx(1 / 3)}
    split = [[["a"], ["b"]], [["b"], ["a"]]]  # one each way: no majority
    assert majority(split) == []
    assert [(p.chosen, p.rejected, p.margin) for p in majority(split, ties=True)] == [("a", "b", 0.0)]


def test_bradley_terry_orders_by_strength_and_stays_finite_for_an_unbeaten_candidate() -> None:
    strengths = bradley_terry_strengths([p for _, p in THREE])
    assert strengths["a"] > strengths["b"] > strengths["c"]
    assert sum(strengths.values()) == pytest.approx(0.0, abs=1e-9)
    unbeaten = bradley_terry_strengths([[["a"], ["b"]]] * 5)
    assert math.isfinite(unbeaten["a"])
    assert unbeaten["a"] > unbeaten["b"]
    pairs = aggregate(THREE, "bradley-terry")
    assert [(p.chosen, p.rejected) for p in pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert pairs[1].margin == pytest.approx(pairs[0].margin + pairs[2].margin)  # log-strength gaps add


def test_agreement_counts_matching_judgements_per_project_and_per_annotator() -> None:
    report = agreement([THREE, [("ann", [["x"], ["y"]])]])
    assert (report.tasks, report.tasks_with_overlap) == (2, 1)
    # ann-bob agree on 2 of 3 pairs, ann-cy 2 of 3, bob-cy 1 of 3.
    assert (report.agreed, report.comparisons) == (5, 9)
    rates = {a.annotator: (a.annotations, a.rate) for a in report.annotators}
    assert rates == {"ann": (2, pytest.approx(4 / 6)), "bob": (1, 0.5), "cy": (1, 0.5)}
    assert agreement([[("solo", [["a"], ["b"]])]]).rate is None


def _task(choices: dict[str, int]) -> RankingTask:
    candidates = [Candidate(id=f"{event}:{i}", text=f"{event} {i}", model="m", origin="answer")
                  for event, n in choices.items() for i in range(n)]  # fmt: skip
    return RankingTask(
        task_key="k", request_id="r", tenant="t", model="m", endpoint="chat.completions", created=0.0,
        request={"messages": [{"role": "user", "content": "q"}]}, prompt="user: q", candidates=candidates,
    )  # fmt: skip


def _fb(**fields: Any) -> FeedbackEvent:
    return FeedbackEvent(id="fb", created=0.0, tenant="t", completion_id="x", **fields)


def test_a_preferred_choice_beats_the_other_choices_of_its_completion() -> None:
    pairs = feedback_comparisons(_task({"r": 3}), [(_fb(preferred_choice=2, user="u1"), "r")])
    assert [(p.chosen, p.rejected, p.source, p.annotator) for p in pairs] == [
        ("r:2", "r:0", "preferred_choice", "u1"), ("r:2", "r:1", "preferred_choice", "u1"),
    ]  # fmt: skip


def test_thumbs_within_one_prompt_give_up_over_down() -> None:
    task = _task({"r": 1, "r.0": 1, "r.1": 1})
    rated = [(_fb(rating="up"), "r"), (_fb(rating="down"), "r.0"), (_fb(rating="down"), "r.1")]
    pairs = feedback_comparisons(task, rated)
    assert [(p.chosen, p.rejected, p.source) for p in pairs] == [
        ("r:0", "r.0:0", "thumbs"),
        ("r:0", "r.1:0", "thumbs"),
    ]
    # A thumb on a completion with several choices, and no preferred choice, says nothing.
    assert (
        feedback_comparisons(
            _task({"r": 2, "r.0": 1}), [(_fb(rating="up"), "r"), (_fb(rating="down"), "r.0")]
        )
        == []
    )
    # Only ups, or votes that cancel out: no pair.
    assert feedback_comparisons(task, [(_fb(rating="up"), "r"), (_fb(rating="down"), "r")]) == []


def test_the_dataset_prompt_is_a_lone_user_message_as_it_is_else_every_turn_by_role() -> None:
    parts = [{"type": "text", "text": "Look:"}, {"type": "image_url"}, {"type": "text", "text": "what?"}]
    assert dataset_prompt(messages_of({"messages": [{"role": "user", "content": parts}]})) == "Look:\nwhat?"
    chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
    assert dataset_prompt(messages_of(chat)) == "system: Be brief.\n\nuser: Hi"
    assert dataset_prompt(messages_of({"prompt": "Once upon a time"})) == "Once upon a time"
