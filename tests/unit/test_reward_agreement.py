"""How often people agree with the reward model behind best-of-n, measured on ranked tasks: human pairs
where the preferred answer got the higher reward, per reward model; and the dataset card's table."""

from __future__ import annotations

import time
from collections import Counter

from feedback.events import BestOfNRecord, CompletionEvent
from feedback.preferences.agreement import agreement
from feedback.preferences.card import dataset_card
from feedback.preferences.export import ExportOptions, Gathered
from feedback.preferences.reward_agreement import reward_agreement
from feedback.ranking import AnnotationRecord, RankingTask, ranking_task


def _event(
    event_id: str, texts: list[str], rewards: dict[int, float], chosen: bool, model: str = "rm-1"
) -> CompletionEvent:
    return CompletionEvent(
        id=event_id, completion_id="c", created=time.time(), tenant="t", model="m",
        endpoint="chat.completions", stream=False, request={"messages": [{"role": "user", "content": "hi"}]},
        choices=[{"index": i, "message": {"role": "assistant", "content": t}} for i, t in enumerate(texts)],
        candidate_of=None if chosen else "orig",
        best_of_n=BestOfNRecord(n=3, temperature=0.8, reward_model=model, chosen=chosen, rewards=rewards),
    )  # fmt: skip


def _task(model: str = "rm-1") -> RankingTask:
    """Best of three: the served answer "A" (reward 2.0), "B" (1.0) and "C" (3.0)."""
    original = _event("orig", ["A"], {0: 2.0}, True, model)
    others = [_event("b", ["B"], {0: 1.0}, False, model), _event("c", ["C"], {0: 3.0}, False, model)]
    task = ranking_task(original, others)
    assert task is not None
    return task


def _record(task: RankingTask, annotator: str, places: list[list[str]]) -> AnnotationRecord:
    return AnnotationRecord(
        task_key=task.task_key, annotation_id=1, ls_task_id=1, project=1, annotator=annotator,
        places=places, created_at="t", updated_at="t",
    )  # fmt: skip


def _ranking(task: RankingTask, order: str, annotator: str = "ann") -> AnnotationRecord:
    ids = {c.text: c.id for c in task.candidates}
    return _record(task, annotator, [[ids[text]] for text in order])


def test_each_human_pair_agrees_when_the_preferred_answer_got_the_higher_reward() -> None:
    task = _task()
    same = _ranking(task, "CAB")  # the reward model's order: 3 pairs, all agree
    other = _ranking(task, "BAC", "bob")  # reversed: 3 pairs, all disagree
    found = reward_agreement([(task, [same, other])])
    assert set(found) == {"rm-1"}
    result = found["rm-1"]
    assert (result.tasks, result.pairs, result.agree, result.disagree, result.reward_ties) == (1, 6, 3, 3, 0)
    assert result.rate == 0.5


def test_ties_in_the_ranking_are_no_pair_and_equal_rewards_are_a_reward_tie() -> None:
    original = _event("orig", ["A"], {0: 1.0}, True)
    others = [_event("b", ["B"], {0: 1.0}, False), _event("c", ["C"], {}, False)]  # C blocked: no reward
    task = ranking_task(original, others)
    assert task is not None
    ids = {c.text: c.id for c in task.candidates}
    tied = _record(task, "a", [[ids["A"], ids["B"]], [ids["C"]]])
    ordered = _record(task, "b", [[ids["B"]], [ids["A"]], [ids["C"]]])
    result = reward_agreement([(task, [tied, ordered])])["rm-1"]
    assert (result.pairs, result.agree, result.disagree, result.reward_ties) == (1, 0, 0, 1)


def test_tasks_without_two_scored_answers_and_other_models_are_kept_apart() -> None:
    plain = CompletionEvent(
        id="p", completion_id="c", created=0.0, tenant="t", model="m", endpoint="chat.completions",
        stream=False, request={"messages": []},
        choices=[{"index": i, "message": {"role": "assistant", "content": t}} for i, t in enumerate("XY")],
    )  # fmt: skip
    plain_task = ranking_task(plain, [])
    assert plain_task is not None
    new = _task("rm-2")
    found = reward_agreement([(plain_task, [_ranking(plain_task, "XY")]), (new, [_ranking(new, "CAB")])])
    assert set(found) == {"rm-2"}
    assert found["rm-2"].rate == 1.0


def test_the_dataset_card_reports_agreement_per_reward_model() -> None:
    task = _task()
    found = reward_agreement([(task, [_ranking(task, "CAB"), _ranking(task, "ACB", "bob")])])
    gathered = Gathered(pairs=[], agreement=agreement([]), counts={}, projects=[], reward_agreement=found)
    card = dataset_card(gathered, ExportOptions(), {"train": 0}, {"train": "train-x"}, None, Counter())
    assert "## Reward models and human rankings" in card
    assert "| `rm-1` | 1 | 6 | 5 | 1 | 0 | 83.3% |" in card
    empty = dataset_card(
        Gathered(pairs=[], agreement=agreement([]), counts={}, projects=[]), ExportOptions(), {}, {}, None,
        Counter(),
    )  # fmt: skip
    assert "No ranked task had two answers scored by a reward model" in empty
