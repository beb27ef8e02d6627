"""Threats to best-of-n: a client multiplying its upstream calls through ``n`` (each choice costs
``best_of_n.n`` answers), a client turning best-of-n off, on or down through its own ``guardrails`` field
or its ``temperature``, a blocked candidate's text leaking, and an upstream failing for some candidates."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.limits import LimitsSettings
from guards.policy import Action, Policy, PolicyBook, Rule
from tests.support.best_of_n_gateway import best_of, contents, gateway, policy, report_of

RUDE, POLITE = "Go away.", "Of course, glad to help, thank you!"


@pytest.mark.parametrize(("n", "most"), [(100, 16), (5, 4)])  # beyond max_n itself; beyond max_n / 4
async def test_n_times_best_of_n_beyond_limits_max_n_is_refused_before_any_upstream_call(
    n: int, most: int
) -> None:
    async with gateway(policy(best_of(n=4))) as gw:  # limits.max_n: 16, so at most 4 choices of 4
        response = await gw.chat(n=n)
        asked = gw.upstream.bodies
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "n")
    assert f"must be at most {most} " in error["message"]
    assert "limits.max_n" in error["message"]
    assert asked == []


async def test_n_up_to_the_budget_is_served_with_every_answer_drawn() -> None:
    async with gateway(policy(best_of(n=4)), limits=LimitsSettings(max_n=8), script=[RUDE, POLITE]) as gw:
        allowed = await gw.chat(n=2)
        refused = await gw.chat(n=3)
        asked = gw.upstream.bodies
    assert allowed.status_code == 200
    assert len(allowed.json()["choices"]) == 2
    assert refused.status_code == 400
    assert [body["n"] for body in asked] == [8]


@pytest.mark.parametrize(
    "field",
    [
        {"best_of_n": {"n": 1}},
        {"best_of_n": {"enabled": False}},
        {"best_of_n": {"reward_model": "/tmp/my-own-model"}},
        {"best_of_n": {"temperature": 0}},
        {"best_of_n": {"min_reward": 0.5}},  # below the policy's 1.0
        {"best_of_n": {"action": "flag"}},  # milder than the policy's block
        {"best_of_n": False},
    ],
)
async def test_a_request_cannot_turn_best_of_n_off_or_loosen_it(field: dict[str, Any]) -> None:
    async with gateway(policy(best_of(min_reward=1.0, action=Action.BLOCK))) as gw:
        response = await gw.chat(guardrails=field)
        asked = gw.upstream.bodies
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"].startswith("guardrails.best_of_n"), error
    assert asked == []


async def test_an_empty_ask_keeps_best_of_n_whole() -> None:
    async with gateway(policy(best_of(min_reward=1.0, action=Action.BLOCK)), script=[RUDE, POLITE]) as gw:
        for field in ({}, {"best_of_n": None}, {"best_of_n": {}}):
            response = await gw.chat(guardrails=field)
            assert contents(response) == [POLITE]
            best = report_of(response)["best_of_n"]
            assert (best["n"], best["min_reward"]) == (4, 1.0)
        asked = gw.upstream.bodies
    assert [body["n"] for body in asked] == [4, 4, 4]


async def test_a_request_may_raise_the_bar_and_harden_the_action() -> None:
    async with gateway(policy(best_of(min_reward=1.0)), script=[RUDE, POLITE]) as gw:
        response = await gw.chat(guardrails={"best_of_n": {"min_reward": 9.0, "action": "block"}})
    best = report_of(response)["best_of_n"]
    assert (best["min_reward"], best["below_min_reward"], best["action"]) == (9.0, True, "block")
    assert response.json()["choices"][0]["finish_reason"] == "content_filter"


async def test_a_request_cannot_turn_best_of_n_on_and_multiply_the_operators_calls() -> None:
    book = PolicyBook(default=Policy(output=[Rule(guard="toxicity")]))
    async with gateway(book) as gw:
        response = await gw.chat(guardrails={"best_of_n": {"min_reward": 1.0}})
        asked = list(gw.upstream.bodies)
        empty = await gw.chat(guardrails={"best_of_n": {}})  # asks nothing: served as the policy says
    assert response.status_code == 400
    assert "cannot turn it on" in response.json()["error"]["message"]
    assert asked == []
    assert empty.status_code == 200
    assert [body.get("n") for body in gw.upstream.bodies] == [None]


async def test_the_clients_temperature_cannot_collapse_the_candidates() -> None:
    async with gateway(policy(best_of(temperature=0.9))) as gw:
        await gw.chat(temperature=0.0)
        await gw.chat(temperature=2.0)
        asked = gw.upstream.bodies
    assert [body["temperature"] for body in asked] == [0.9, 0.9]


async def test_no_text_of_a_blocked_candidate_reaches_the_client_whole_or_streamed() -> None:
    secret = "BADWORD and the secret plan"
    async with gateway(policy(), script=[secret, RUDE, secret, secret]) as gw:
        whole = await gw.chat(logprobs=True)
        streamed = await gw.chat(stream=True)
    assert contents(whole) == [RUDE]
    for response in (whole, streamed):
        assert "secret plan" not in response.text


async def test_an_upstream_failing_for_some_candidates_fails_the_request_and_records_nothing() -> None:
    """The documented fail mode: a candidate call that fails fails the request with the upstream's error
    (as for any n > 1); no best-of-fewer is served in its name."""
    async with gateway(policy(), script=[RUDE, POLITE]) as gw:
        response = await gw.chat(model="scripted-flaky")
        calls, events, batches = gw.upstream.scripted_calls, gw.recorder.events, gw.scorer.batches
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "upstream_error"
    assert calls >= 2  # the failing call was made (the others may be cancelled before they are)
    assert events == []
    assert batches == []
