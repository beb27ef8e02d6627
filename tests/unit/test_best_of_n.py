"""Best-of-n (``policies.….best_of_n``) over the fake upstream's scripted answers, with a reward model
that rewards politeness words (``tests.support.fake_reward``): the pick, the guards on every candidate,
``min_reward``, the client's own ``n``, upstreams with and without ``n``, streams, the report, the
recording and the ranking task. Attacks: ``tests/security/test_best_of_n_attacks.py``."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from feedback.events import CompletionEvent
from feedback.labelstudio.tasks import labelstudio_data
from feedback.ranking import ranking_task
from guards.policy import Action, Policy, PolicyBook, Revision, Rule
from tests.support.best_of_n_gateway import best_of, contents, decoded, gateway, policy, report_of
from tests.support.fake_upstream import DEFAULT_REVISION
from tests.support.sse import sse_events

REFUSAL = "This answer was withheld by the gateway's toxicity guard (toxicity)."
RUDE, CURT, POLITE, KIND = "Go away.", "Fine.", "Of course, glad to help, thank you!", "Sure, happy to help."
SCRIPT = [RUDE, POLITE, CURT, KIND]  # rewards 0, 3, 0, 2


# --- the pick ----------------------------------------------------------------------------------------


async def test_the_best_rewarded_of_four_answers_is_the_choice_and_the_report_says_why() -> None:
    async with gateway(policy(), script=SCRIPT) as gw:
        response = await gw.chat("Can you help me?", temperature=0.0)
        asked, batches = gw.upstream.bodies, gw.scorer.batches
    assert response.status_code == 200
    assert contents(response) == [POLITE]
    assert response.json()["choices"][0]["index"] == 0
    # One upstream call for four answers at the policy's temperature (the client's 0.0 would make them alike).
    assert [(body["n"], body["temperature"], body["stream"]) for body in asked] == [(4, 0.8, False)]
    # One scoring batch, each answer with the prompt as one text.
    assert batches == [[("Can you help me?", text) for text in SCRIPT]]
    best = report_of(response)["best_of_n"]
    assert best == {
        "n": 4,
        "candidates": [
            {"decision": "pass", "reward": 0.0},
            {"decision": "pass", "reward": 3.0},
            {"decision": "pass", "reward": 0.0},
            {"decision": "pass", "reward": 2.0},
        ],
        "chosen": 1,
        "latency_ms": best["latency_ms"],
    }
    assert report_of(response)["decision"] == "pass"
    assert response.headers["x-hhh-guardrails"] == "output=pass"
    # The client pays for every answer drawn: the upstream's usage for all four.
    assert response.json()["usage"]["completion_tokens"] == 12


async def test_ties_go_to_the_first_answer() -> None:
    async with gateway(policy(), script=[CURT, RUDE, CURT, RUDE]) as gw:
        response = await gw.chat()
    assert report_of(response)["best_of_n"]["chosen"] == 0


async def test_a_blocked_best_answer_is_skipped_for_the_next_best() -> None:
    toxic_but_polite = "Of course, glad to help, thank you, BADWORD!"
    async with gateway(policy(), script=[RUDE, toxic_but_polite, KIND, CURT]) as gw:
        response = await gw.chat()
        batches = gw.scorer.batches
    assert contents(response) == [KIND]
    best = report_of(response)["best_of_n"]
    assert [c["decision"] for c in best["candidates"]] == ["pass", "block", "pass", "pass"]
    assert "reward" not in best["candidates"][1]  # a blocked answer is not scored
    assert best["chosen"] == 2
    assert [answer for _, answer in batches[0]] == [RUDE, KIND, CURT]
    assert toxic_but_polite not in response.text  # neither its text nor its score reaches the client


async def test_every_answer_blocked_gives_the_normal_content_filter_choice() -> None:
    async with gateway(policy(), script=["BADWORD one", "BADWORD two"]) as gw:
        response = await gw.chat()
        batches = gw.scorer.batches
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] is None
    assert choice["message"]["refusal"] == REFUSAL
    report = report_of(response)
    assert report["decision"] == "block"
    assert "chosen" not in report["best_of_n"]
    assert [c["decision"] for c in report["best_of_n"]["candidates"]] == ["block"] * 4
    assert batches == []  # nothing to score
    assert response.headers["x-hhh-guardrails"] == "output=block(toxicity)"


async def test_the_clients_n_is_honoured_each_choice_the_best_of_its_own_group() -> None:
    # Group 0 is answers 0-3, group 1 answers 4-7: each has its best at a different place.
    script = [RUDE, CURT, KIND, RUDE, POLITE, CURT, RUDE, KIND]
    async with gateway(policy(), script=script) as gw:
        response = await gw.chat(n=2)
        asked = gw.upstream.bodies
    assert [body["n"] for body in asked] == [8]
    assert contents(response) == [KIND, POLITE]
    assert [c["index"] for c in response.json()["choices"]] == [0, 1]
    assert [report_of(response, i)["best_of_n"]["chosen"] for i in (0, 1)] == [2, 0]
    assert [report_of(response, i)["index"] for i in (0, 1)] == [0, 1]


async def test_an_upstream_without_n_is_asked_once_per_answer_concurrently() -> None:
    async with gateway(policy(), script=SCRIPT) as gw:
        response = await gw.chat(model="scripted-no-n")
        asked = gw.upstream.bodies
    assert contents(response) == [POLITE]
    assert [(body["n"], body["temperature"]) for body in asked] == [(1, 0.8)] * 4


# "echo" answers legacy completions with the prompt, choice i with its i-th part between "||".
ECHOED = "Go away.||Sure, glad to help.||BADWORD||Fine."


async def test_legacy_completions_get_best_of_n_too() -> None:
    async with gateway(policy()) as gw:
        body = {"model": "echo", "prompt": ECHOED, "best_of": 1}
        response = await gw.client.post("/v1/completions", json=body)
        (asked,) = gw.upstream.bodies
    assert response.status_code == 200
    assert "best_of" not in asked  # the gateway picks; an upstream refuses best_of below n
    (choice,) = response.json()["choices"]
    assert choice == {"index": 0, "text": "Sure, glad to help.", "finish_reason": "stop"}
    best = report_of(response)["best_of_n"]
    assert [c["decision"] for c in best["candidates"]] == ["pass", "pass", "block", "pass"]
    assert best["chosen"] == 1


# --- min_reward --------------------------------------------------------------------------------------


async def test_a_best_answer_at_or_above_min_reward_is_served_as_it_is() -> None:
    async with gateway(policy(best_of(min_reward=3.0, action=Action.BLOCK)), script=SCRIPT) as gw:
        response = await gw.chat()
    assert contents(response) == [POLITE]
    best = report_of(response)["best_of_n"]
    assert (best["min_reward"], best["below_min_reward"]) == (3.0, False)
    assert "action" not in best


@pytest.mark.parametrize("action", [Action.FLAG, Action.ANNOTATE, Action.BLOCK])
async def test_a_best_answer_below_min_reward_gets_the_policys_action(action: Action) -> None:
    async with gateway(policy(best_of(min_reward=5.0, action=action)), script=SCRIPT) as gw:
        response = await gw.chat()
    choice = response.json()["choices"][0]
    report = report_of(response)
    assert report["best_of_n"]["below_min_reward"] is True
    assert report["best_of_n"]["action"] == action.value
    assert report["decision"] == action.value
    assert response.headers["x-hhh-guardrails"] == f"output={action.value}(best_of_n)"
    if action is Action.FLAG:
        assert choice["message"]["content"] == POLITE
    elif action is Action.ANNOTATE:
        assert choice["message"]["content"].startswith(POLITE + "\n\n[Note from the gateway")
    else:
        assert choice["message"]["content"] is None
        assert choice["finish_reason"] == "content_filter"
        assert "best_of_n" in choice["message"]["refusal"]
        assert "below the policy's min_reward 5.0" in choice["message"]["refusal"]


# --- the guards' other decisions ---------------------------------------------------------------------


async def test_a_redacted_answer_is_scored_and_served_redacted() -> None:
    pii = Rule(guard="pii", action=Action.REDACT)
    mail = "Of course, glad to help, thank you: write to bo@example.com"
    async with gateway(policy(best_of(), pii), script=[RUDE, mail]) as gw:
        response = await gw.chat()
        batches = gw.scorer.batches
    assert contents(response) == ["Of course, glad to help, thank you: write to <EMAIL_ADDRESS>"]
    assert "bo@example.com" not in str(batches)  # the reward model reads what the client would get
    assert report_of(response)["decision"] == "redact"


def _revising() -> Rule:
    return Rule(guard="toxicity", action=Action.REVISE, revision=Revision(critic_model="critic"))


async def test_a_revise_decision_counts_as_not_passing_when_another_answer_passes() -> None:
    toxic_but_polite = "Of course, glad to help, thank you, BADWORD!"
    async with gateway(policy(best_of(), _revising()), script=[toxic_but_polite, CURT, RUDE, CURT]) as gw:
        response = await gw.chat()
        critic_calls = [body for body in gw.upstream.bodies if body["model"] == "critic"]
    assert contents(response) == [CURT]
    assert critic_calls == []  # no critic is asked while an answer passes
    best = report_of(response)["best_of_n"]
    assert [c["decision"] for c in best["candidates"]] == ["revise", "pass", "pass", "pass"]
    assert best["candidates"][0]["reward"] == 3.0  # scored, but it did not pass


async def test_when_no_answer_passes_the_best_one_takes_the_revise_path() -> None:
    script = ["BADWORD.", "Of course, BADWORD, thank you.", "BADWORD, sure.", "BADWORD!"]
    async with gateway(policy(best_of(), _revising()), script=script) as gw:
        response = await gw.chat()
        critic_calls = [body for body in gw.upstream.bodies if body["model"] == "critic"]
    assert contents(response) == [DEFAULT_REVISION]
    report = report_of(response)
    assert report["revised"] is True
    assert report["best_of_n"]["chosen"] == 1  # the best of the four went to the critic
    assert len(critic_calls) == 2  # one critique, one revision: for that answer only
    assert "Of course, BADWORD, thank you." in critic_calls[0]["messages"][-1]["content"]


# --- the reward model failing ------------------------------------------------------------------------


async def test_a_failing_reward_model_serves_the_first_answer_that_passes_and_says_so() -> None:
    async with gateway(policy(), script=["BADWORD", RUDE, POLITE, KIND]) as gw:
        gw.scorer.fail = True
        response = await gw.chat()
    assert response.status_code == 200
    assert contents(response) == [RUDE]
    best = report_of(response)["best_of_n"]
    assert best["error"] == "the reward model failed (RuntimeError)"
    assert best["chosen"] == 1
    assert all("reward" not in candidate for candidate in best["candidates"])


async def test_a_reward_model_past_its_time_out_counts_as_failed_and_misses_min_reward() -> None:
    settings = best_of(timeout_ms=50, min_reward=0.0, action=Action.BLOCK)
    async with gateway(policy(settings), script=SCRIPT) as gw:
        gw.scorer.delay_s = 5.0
        response = await gw.chat()
    best = report_of(response)["best_of_n"]
    assert best["error"] == "the reward model did not answer within 50 ms"
    assert best["below_min_reward"] is True  # an unknown reward does not meet the bar
    assert response.json()["choices"][0]["finish_reason"] == "content_filter"
    assert "reward unknown" in response.json()["choices"][0]["message"]["refusal"]


# --- streams -----------------------------------------------------------------------------------------


async def test_a_stream_gets_the_winner_as_chunks_once_chosen() -> None:
    async with gateway(policy(), script=SCRIPT) as gw:
        response = await gw.chat(n=2, stream=True, stream_options={"include_usage": True})
        asked = gw.upstream.bodies
    assert response.status_code == 200
    assert response.headers["x-hhh-guardrails"] == "output=pass"
    # Asked whole: the candidates must be complete before one is chosen.
    assert [(body["stream"], body["n"], "stream_options" in body) for body in asked] == [(False, 8, False)]
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    text = {0: "", 1: ""}
    finish = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            text[choice["index"]] += choice["delta"].get("content") or ""
            if choice["finish_reason"]:
                finish[choice["index"]] = choice["finish_reason"]
    assert text == {0: POLITE, 1: POLITE}  # the script goes round: each group's best is POLITE
    assert finish == {0: "stop", 1: "stop"}
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == 24
    assert [r["best_of_n"]["chosen"] for r in last["guardrails"]["output"]] == [1, 1]


async def test_a_stream_without_include_usage_has_no_usage_and_a_blocked_choice_streams_its_refusal() -> None:
    async with gateway(policy(), script=["BADWORD"]) as gw:
        response = await gw.chat(stream=True)
    chunks = sse_events(response.text)[:-1]
    assert all("usage" not in chunk for chunk in chunks)
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    assert deltas[1]["delta"] == {"refusal": REFUSAL}
    assert deltas[-1]["finish_reason"] == "content_filter"
    assert chunks[-1]["guardrails"]["output"][0]["decision"] == "block"


async def test_a_legacy_completions_stream_gets_text_completion_chunks() -> None:
    async with gateway(policy()) as gw:
        body = {"model": "echo", "prompt": ECHOED, "stream": True, "stream_options": {"include_usage": True}}
        response = await gw.client.post("/v1/completions", json=body)
    chunks = sse_events(response.text)[:-1]
    assert {chunk["object"] for chunk in chunks} == {"text_completion"}
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "Sure, glad to help."
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [None, "stop"]
    # The echo model reports no usage: the gateway's estimate, for every answer drawn, says so.
    assert chunks[-1]["usage"]["estimated"] is True


# --- recording and ranking ---------------------------------------------------------------------------


async def test_every_answer_drawn_is_recorded_with_its_reward_and_ranked_blind() -> None:
    async with gateway(policy(), script=[RUDE, POLITE, "BADWORD", KIND]) as gw:
        response = await gw.chat()
        original, candidates = gw.events()
    assert response.status_code == 200
    original, *candidates = decoded([original, *candidates])  # as the store reads them back
    assert original.choices[0]["message"]["content"] == POLITE
    assert original.candidates_requested == 3
    assert original.completion_id == "chatcmpl-fake"
    assert original.best_of_n is not msgspec.UNSET
    assert (original.best_of_n.chosen, original.best_of_n.rewards) == (True, {0: 3.0})
    assert original.best_of_n.reward_model == "politeness-rm"
    by_text = {_text(event): event for event in candidates}
    assert set(by_text) == {RUDE, KIND, "[blocked]"}
    for text, reward in ((RUDE, {0: 0.0}), (KIND, {0: 2.0}), ("[blocked]", {})):
        event = by_text[text]
        assert event.best_of_n is not msgspec.UNSET
        assert (event.best_of_n.chosen, event.best_of_n.rewards) == (False, reward)
        assert event.sampling == {"best_of_n": 4, "temperature": 0.8}
        assert event.request == original.request
        assert event.completion_id == ""  # never seen by the client: feedback by id finds the original
    # The blocked one is recorded as the client would have seen it.
    assert "BADWORD" not in str(msgspec.json.encode(by_text["[blocked]"]))

    task = ranking_task(original, candidates)
    assert task is not None
    assert len(task.candidates) == 4
    assert {c.origin for c in task.candidates} == {"best-of-n"}
    assert {c.text: c.reward for c in task.candidates if not c.blocked} == {RUDE: 0.0, POLITE: 3.0, KIND: 2.0}
    assert [c.chosen for c in task.candidates].count(True) == 1
    # Annotators see no reward and nothing that tells the served answer from the others.
    shown = labelstudio_data(task)
    titles = [item["title"] for item in shown["completions"] if "blocked" not in item["body"]]
    assert all(re.fullmatch(r"Answer [A-D]", title) for title in titles), titles
    assert "best-of-n" not in str(shown)
    assert "3.0" not in str(shown)
    assert "reward" not in str(shown)


def _text(event: CompletionEvent) -> str:
    message = event.choices[0]["message"]
    return "[blocked]" if message["content"] is None else str(message["content"])


async def test_the_recorded_stream_holds_the_winner_as_the_client_got_it() -> None:
    async with gateway(policy(), script=SCRIPT) as gw:
        await gw.chat(stream=True)
        original, candidates = gw.events()
    assert original.stream is True
    assert original.choices[0]["message"]["content"] == POLITE
    assert len(candidates) == 3


async def test_restored_values_reach_the_client_and_never_the_record() -> None:
    redact = Rule(guard="pii", action=Action.REDACT)
    book = PolicyBook(default=Policy(input=[redact], output=[Rule(guard="toxicity")], best_of_n=best_of()))
    polite = "Of course, glad to write to <EMAIL_ADDRESS_1>, thank you."
    async with gateway(book, script=[RUDE, polite]) as gw:
        response = await gw.chat("Please mail bo@example.com for me.")
        original, candidates = gw.events()
        asked = gw.upstream.bodies
    assert contents(response) == ["Of course, glad to write to bo@example.com, thank you."]
    assert "bo@example.com" not in str(asked)
    recorded = msgspec.json.encode([original, *candidates])
    assert b"bo@example.com" not in recorded
    assert b"<EMAIL_ADDRESS_1>" in recorded


# --- configuration -----------------------------------------------------------------------------------


def _with(best: dict[str, Any]) -> dict[str, Any]:
    return {"policies": {"models": {"m": {"best_of_n": {"reward_model": "rm", **best}}}}}


@pytest.mark.parametrize(
    ("best", "message"),
    [
        ({"n": 1}, r"^policies.models.m.best_of_n.n: must be between 2 and 16, not 1"),
        ({"n": 17}, r"^policies.models.m.best_of_n.n: must be between 2 and 16, not 17"),
        ({"action": "revise"}, r"^policies.models.m.best_of_n.action: must be flag, annotate or block"),
        ({"temperature": 3}, r"^policies.models.m.best_of_n.temperature: must be between 0 and 2"),
        ({"min_reward": ".nan"}, r"^policies.models.m.best_of_n"),
        ({"reward_model": " "}, r"^policies.models.m.best_of_n.reward_model: must name a reward model"),
        ({"timeout_ms": 0}, r"^policies.models.m.best_of_n.timeout_ms: must be positive"),
    ],
)
def test_best_of_n_settings_are_validated_naming_the_key(best: dict[str, Any], message: str) -> None:
    from gateway.settings import ConfigError, settings_from_mapping

    raw = _with(best)
    if best.get("min_reward") == ".nan":
        raw = _with({"min_reward": float("nan")})
    with pytest.raises(ConfigError, match=message):
        settings_from_mapping(raw, environ={})


def _settings(book: PolicyBook, **extra: Any) -> Any:
    from gateway.settings import FeedbackSettings, Settings

    return Settings(feedback=FeedbackSettings(record=False), guards={}, policies=book, **extra)


def test_a_reward_model_directory_that_does_not_exist_is_an_error_naming_the_key(tmp_path: Any) -> None:
    from gateway.app import create_app
    from guards.policy import BestOfN, PolicyError

    missing = str(tmp_path / "no-such-model")
    book = PolicyBook(default=Policy(), models={"m": Policy(best_of_n=BestOfN(reward_model=missing))})
    with pytest.raises(PolicyError, match=r"^policies.models.m.best_of_n.reward_model: no such directory"):
        create_app(_settings(book), guards={})


def test_a_policy_drawing_more_answers_than_limits_max_n_is_an_error_naming_the_key() -> None:
    from gateway.app import create_app
    from gateway.limits import LimitsSettings
    from guards.policy import PolicyError

    book = PolicyBook(default=Policy(best_of_n=best_of(n=4)))
    with pytest.raises(PolicyError, match=r"^policies.default.best_of_n.n: 4 answers .* limits.max_n \(3\)"):
        create_app(_settings(book, limits=LimitsSettings(max_n=3)), guards={})


async def test_a_reward_model_that_fails_to_load_is_an_error_naming_the_key(tmp_path: Any) -> None:
    from gateway.guarded.reward_scorers import load_reward_scorers
    from guards.policy import BestOfN, PolicyError
    from guards.runner import RunnerPool

    empty = tmp_path / "not-a-model"
    empty.mkdir()
    book = PolicyBook(
        default=Policy(),
        tenants={"acme": {"default": Policy(best_of_n=BestOfN(reward_model=str(empty)))}},  # type: ignore[dict-item]
    )
    book = msgspec.convert(msgspec.to_builtins(book), PolicyBook)
    runners = RunnerPool()
    key = "policies.tenants.acme.default.best_of_n.reward_model"
    with pytest.raises(PolicyError, match=rf"^{key}: cannot load"):
        await load_reward_scorers(book, runners)
    await runners.close()
