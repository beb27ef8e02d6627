"""The ``revise`` action on whole answers, with a scripted critic (``tests.support.fake_upstream``): the
answer critiqued and revised, the revision checked again, the fallbacks, the report, the AI feedback.
Streams: ``test_revise_stream``."""

from __future__ import annotations

from typing import Any

import pytest

from feedback.events import CompletionEvent, RevisionEvent
from gateway.app import create_app
from gateway.settings import Settings, UpstreamSettings, settings_from_mapping
from guards.policy import (
    Action,
    Policy,
    PolicyBook,
    PolicyError,
    Revision,
    Rule,
    StreamMode,
    StreamPolicy,
)
from tests.support.fake_guards import EmailGuard, WordGuard
from tests.support.fake_upstream import DEFAULT_REVISION
from tests.support.revise_gateway import GUARDS, book, choice_report, gateway, revise

# --- a revision that passes ----------------------------------------------------------------------


async def test_a_toxic_answer_is_critiqued_revised_and_passes() -> None:
    async with gateway(book(revise(max_tokens=64))) as gw:
        response = await gw.chat("you BADWORD, here is the recipe")
        critic_calls = gw.critic_bodies()
    assert response.status_code == 200
    choice = response.json()["choices"][0]
    assert choice["message"]["content"] == DEFAULT_REVISION
    assert choice["finish_reason"] == "stop"  # the upstream's
    report = choice_report(response)
    assert report["decision"] == "revise"
    assert report["revised"] is True
    (round_,) = report["revision"]["rounds"]
    assert round_["critic_model"] == "critic"
    assert round_["principles"] == ["harmless-language"]
    assert round_["critique"].startswith("The answer insults the reader")
    assert round_["before"] == {"toxicity": "revise"}
    assert round_["after"] == {"toxicity": "pass"}
    assert round_["latency_ms"] >= 0
    assert "fallback" not in report["revision"]
    assert response.headers["x-hhh-guardrails"] == "output=revise(toxicity)"
    # Two critic calls: a critique, then a revision, each non-streamed with the rule's max_tokens.
    assert [body["max_tokens"] for body in critic_calls] == [64, 64]
    assert all(body["stream"] is False for body in critic_calls)
    assert "you BADWORD, here is the recipe" in critic_calls[0]["messages"][-1]["content"]
    assert "insults, demeans, threatens" in critic_calls[0]["messages"][-1]["content"]  # the principle
    assert "Critique:\nThe answer insults the reader" in critic_calls[1]["messages"][-1]["content"]


async def test_the_critic_defaults_to_the_requests_own_model() -> None:
    rule = Rule(guard="toxicity", action=Action.REVISE)
    async with gateway(book(rule)) as gw:
        response = await gw.chat("you BADWORD")
        models = [body["model"] for body in gw.upstream.bodies]
    # The echo model critiques and revises by echoing its prompt: the revision is still toxic (it repeats
    # the answer), so the default fallback blocks; the point here is who was asked.
    assert models == ["echo", "echo", "echo"]
    assert choice_report(response)["revision"]["rounds"][0]["critic_model"] == "echo"


async def test_max_rounds_two_revises_a_revision_that_still_fails() -> None:
    async with gateway(book(revise(max_rounds=2))) as gw:
        gw.upstream.critic_replies = ["first critique", "still BADWORD", "second critique", "All good now."]
        response = await gw.chat("you BADWORD")
    assert response.json()["choices"][0]["message"]["content"] == "All good now."
    rounds = choice_report(response)["revision"]["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert [r["after"] for r in rounds] == [{"toxicity": "revise"}, {"toxicity": "pass"}]
    assert rounds[1]["before"] == {"toxicity": "revise"}


async def test_the_revision_is_checked_by_every_output_guard_and_redacted() -> None:
    rules = (revise(), Rule(guard="pii", action=Action.REDACT))
    async with gateway(book(*rules)) as gw:
        gw.upstream.critic_replies = ["critique", "Write to sam@example.org instead."]
        response = await gw.chat("you BADWORD")
    assert response.json()["choices"][0]["message"]["content"] == "Write to <EMAIL_ADDRESS> instead."
    (round_,) = choice_report(response)["revision"]["rounds"]
    assert round_["after"] == {"toxicity": "pass", "pii": "redact"}


async def test_legacy_completions_get_the_revision_as_their_text() -> None:
    async with gateway(book(revise())) as gw:
        body = {"model": "echo", "prompt": "you BADWORD"}
        response = await gw.client.post("/v1/completions", json=body)
    choice = response.json()["choices"][0]
    assert choice["text"] == DEFAULT_REVISION
    assert response.json()["guardrails"]["output"][0]["revised"] is True


async def test_each_choice_is_judged_and_revised_on_its_own() -> None:
    async with gateway(book(revise())) as gw:
        response = await gw.chat("a kind answer||you BADWORD", n=2)
    first, second = response.json()["choices"]
    assert first["message"]["content"] == "a kind answer"
    assert second["message"]["content"] == DEFAULT_REVISION
    reports = response.json()["guardrails"]["output"]
    assert "revised" not in reports[0]  # nothing fired: the report is as it always was
    assert reports[1]["revised"] is True


# --- fallbacks -----------------------------------------------------------------------------------


async def test_a_revision_that_is_still_toxic_falls_back_to_block() -> None:
    async with gateway(book(revise())) as gw:
        gw.upstream.critic_replies = ["a critique", "you BADWORD again"]
        response = await gw.chat("you BADWORD")
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] is None
    assert "toxicity" in choice["message"]["refusal"]
    report = choice_report(response)
    assert report["decision"] == "block"
    assert report["revised"] is False
    assert report["revision"]["fallback"] == "block"
    assert "after 1 round" in report["revision"]["reason"]
    assert report["revision"]["rounds"][0]["after"] == {"toxicity": "revise"}
    assert response.headers["x-hhh-guardrails"] == "output=block(toxicity)"


async def test_a_critic_error_applies_the_fallback_and_says_why() -> None:
    async with gateway(book(revise(critic_model="plain-503"))) as gw:
        response = await gw.chat("you BADWORD")
    report = choice_report(response)
    assert response.json()["choices"][0]["finish_reason"] == "content_filter"
    assert report["revised"] is False
    assert "the critic 'plain-503' failed" in report["revision"]["reason"]
    (round_,) = report["revision"]["rounds"]
    assert "after" not in round_
    assert "critique" not in round_


async def test_a_critic_timeout_applies_the_fallback_within_the_budget() -> None:
    async with gateway(book(revise(critic_model="slow-critic", timeout_ms=200))) as gw:
        response = await gw.chat("you BADWORD")
    report = choice_report(response)
    assert report["revision"]["reason"] == "the revision ran out of its time budget (200 ms)"
    assert report["revision"]["latency_ms"] > 0  # reported; the reason above says the budget ended it
    assert response.json()["choices"][0]["finish_reason"] == "content_filter"


async def test_a_flag_fallback_lets_the_original_through_flagged() -> None:
    async with gateway(book(revise(critic_model="plain-503", fallback=Action.FLAG))) as gw:
        response = await gw.chat("you BADWORD")
    assert response.json()["choices"][0]["message"]["content"] == "you BADWORD"
    report = choice_report(response)
    assert (report["decision"], report["revision"]["fallback"]) == ("flag", "flag")


async def test_a_block_by_another_rule_wins_over_revise_and_asks_no_critic() -> None:
    rules = (revise(), Rule(guard="pii", action=Action.BLOCK))
    async with gateway(book(*rules)) as gw:
        response = await gw.chat("you BADWORD, mail ann@example.org")
        assert gw.critic_bodies() == []
    assert choice_report(response)["decision"] == "block"
    assert "revised" not in choice_report(response)


# --- AI feedback ---------------------------------------------------------------------------------


async def test_a_revision_is_recorded_as_ai_feedback_and_the_answer_as_the_client_got_it() -> None:
    async with gateway(book(revise())) as gw:
        response = await gw.chat("you BADWORD")
    assert response.status_code == 200
    revisions = [e for e in gw.recorder.events if isinstance(e, RevisionEvent)]
    completions = [e for e in gw.recorder.events if isinstance(e, CompletionEvent)]
    (revision,), (completion,) = revisions, completions
    assert revision.origin == "gateway"
    assert revision.request_id == completion.id  # linked to the completion recorded beside it
    assert (revision.rejected, revision.chosen) == ("you BADWORD", DEFAULT_REVISION)
    assert revision.principles == ["harmless-language"]
    assert (revision.critic_model, revision.model, revision.rounds) == ("critic", "echo", 1)
    assert revision.critiques[0].startswith("The answer insults")
    assert revision.request["messages"][0]["content"] == "you BADWORD"
    assert completion.choices[0]["message"]["content"] == DEFAULT_REVISION
    assert completion.guardrails is not None
    assert completion.guardrails.output
    assert completion.guardrails.output[0].revised is True


async def test_a_fallback_records_no_ai_feedback() -> None:
    async with gateway(book(revise(critic_model="plain-503"))) as gw:
        await gw.chat("you BADWORD")
    assert not [e for e in gw.recorder.events if isinstance(e, RevisionEvent)]


# --- configuration and requests -------------------------------------------------------------------


def _app(policies: PolicyBook) -> None:
    settings = Settings(
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")], guards=GUARDS, policies=policies
    )
    create_app(settings, guards={"toxicity": WordGuard(), "pii": EmailGuard()})


def test_revise_on_input_is_a_configuration_error_naming_the_key() -> None:
    policies = PolicyBook(default=Policy(input=[Rule(guard="toxicity", action=Action.REVISE)]))
    with pytest.raises(PolicyError, match=r"^policies.default.input\[0\].action: 'revise' is for output"):
        _app(policies)


def test_revise_with_stream_first_is_a_configuration_error() -> None:
    policies = PolicyBook(
        models={"m": Policy(output=[revise()], stream=StreamPolicy(mode=StreamMode.STREAM_FIRST))}
    )
    with pytest.raises(PolicyError, match=r"^policies.models.m.output\[0\].action: revise needs buffer mode"):
        _app(policies)


def test_revision_settings_on_another_action_are_an_error() -> None:
    rule = Rule(guard="toxicity", action=Action.BLOCK, revision=Revision())
    with pytest.raises(
        PolicyError, match=r"^policies.default.output\[0\].revision: only for action 'revise'"
    ):
        _app(PolicyBook(default=Policy(output=[rule])))


def test_a_missing_constitution_file_is_an_error_naming_the_key(tmp_path: Any) -> None:
    rule = revise(constitution=str(tmp_path / "missing.yaml"))
    with pytest.raises(PolicyError, match=r"^policies.default.output\[0\].revision.constitution: "):
        _app(book(rule))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"fallback": "revise"}, "fallback: must be block"),
        ({"max_rounds": 0}, "max_rounds: must be between 1"),
        ({"timeout_ms": 0}, "timeout_ms: must be positive"),
    ],
)
def test_revision_settings_are_validated(raw: dict[str, Any], message: str) -> None:
    config = {
        "policies": {"default": {"output": [{"guard": "toxicity", "action": "revise", "revision": raw}]}}
    }
    with pytest.raises(Exception, match=message):
        settings_from_mapping(config)


async def test_an_operators_constitution_replaces_the_built_in_one(tmp_path: Any) -> None:
    path = tmp_path / "house.yaml"
    path.write_text(
        "principles:\n  - id: house-style\n    applies_to: ['toxicity']\n"
        "    critique: Is it rude?\n    revision: Make it kind.\n"
    )
    async with gateway(book(revise(constitution=str(path)))) as gw:
        response = await gw.chat("you BADWORD")
        asked = gw.critic_bodies()[0]["messages"][-1]["content"]
    assert choice_report(response)["revision"]["rounds"][0]["principles"] == ["house-style"]
    assert "Is it rude?" in asked


async def test_a_request_may_turn_revise_into_block_but_never_ask_for_revise() -> None:
    async with gateway(book(revise())) as gw:
        tightened = await gw.chat(
            "you BADWORD", guardrails={"output": [{"guard": "toxicity", "action": "block"}]}
        )
        assert gw.critic_bodies() == []
        asked = await gw.chat("hello", guardrails={"output": [{"guard": "toxicity", "action": "revise"}]})
    assert choice_report(tightened)["decision"] == "block"
    assert asked.status_code == 400
    assert asked.json()["error"]["param"] == "guardrails.output[0].action"
