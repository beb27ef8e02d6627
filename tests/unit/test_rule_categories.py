"""A rule counts only some of its guard's categories (``Rule.categories``); the default output PII rule
counts what is private whatever the context, not person names (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.settings import settings_from_mapping
from guards.pipeline import GuardEngine
from guards.policy import (
    CONTEXT_FREE_PII,
    Action,
    Policy,
    PolicyError,
    RequestGuardrails,
    RequestRule,
    Rule,
    default_policy,
    tighten,
)
from guards.verdict import Stage
from tests.support.fake_guards import EmailGuard, NameAndEmailGuard, WordGuard
from tests.support.policy_harness import chat, guarded_client

ANSWER = "Hamlet was written by William Shakespeare; tickets from box@globe.example."
USABLE = {"pii": frozenset(Stage), "toxicity": frozenset(Stage)}
DEFAULTS = {"pii": {"EMAIL_ADDRESS": 0.5, "PERSON": 0.5}, "toxicity": {"toxicity": 0.5}}
CATEGORIES = {"pii": ["EMAIL_ADDRESS", "PERSON"], "toxicity": ["toxicity"]}


def test_the_default_output_pii_rule_counts_context_free_entities_and_input_counts_all() -> None:
    policy = default_policy()
    [output_pii] = [rule for rule in policy.output if rule.guard == "pii"]
    [input_pii] = [rule for rule in policy.input if rule.guard == "pii"]
    assert output_pii.categories == list(CONTEXT_FREE_PII)
    assert "PERSON" not in CONTEXT_FREE_PII
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN"} <= set(CONTEXT_FREE_PII)
    assert input_pii.categories is None  # every entity: names are redacted on the way in


async def test_a_category_left_out_neither_flags_nor_redacts() -> None:
    engine = GuardEngine({"pii": NameAndEmailGuard()})
    only_email = Rule(guard="pii", action=Action.REDACT, categories=["EMAIL_ADDRESS"])
    outcome = await engine.run(Stage.OUTPUT, [only_email], [ANSWER, "Ask William Shakespeare."])
    assert outcome.texts[0].text == ANSWER.replace("box@globe.example", "<EMAIL_ADDRESS>")
    assert outcome.texts[1].decision == "pass"
    assert outcome.texts[1].text == "Ask William Shakespeare."
    verdict = outcome.results[0].verdicts[0]
    assert verdict is not None
    assert verdict.categories == ["EMAIL_ADDRESS"]
    assert set(verdict.scores) == {"EMAIL_ADDRESS"}
    # A block rule counting only PERSON blocks the name, not the e-mail alone.
    only_person = Rule(guard="pii", action=Action.BLOCK, categories=["PERSON"])
    outcome = await engine.run(Stage.OUTPUT, [only_person], [ANSWER, "mail box@globe.example"])
    assert [t.decision for t in outcome.texts] == ["block", "pass"]


async def test_through_the_gateway_the_default_output_keeps_names_and_redacts_emails() -> None:
    book = settings_from_mapping({}, environ={}).policies
    book.default = Policy(output=book.default.output)  # the echo must see the name, so no input rule
    guards: dict[str, Any] = {"toxicity": WordGuard(), "pii": NameAndEmailGuard()}
    async with guarded_client(book, guards) as client:
        plain = await client.post("/v1/chat/completions", json=chat(ANSWER, model="echo"))
        ask = {"output": [{"guard": "pii", "categories": ["PERSON"]}]}
        opted = await client.post("/v1/chat/completions", json=chat(ANSWER, model="echo", guardrails=ask))
    assert plain.json()["choices"][0]["message"]["content"] == (
        "Hamlet was written by William Shakespeare; tickets from <EMAIL_ADDRESS>."
    )
    assert opted.json()["choices"][0]["message"]["content"] == (
        "Hamlet was written by <PERSON>; tickets from <EMAIL_ADDRESS>."
    )


def test_a_request_adds_categories_and_never_drops_one() -> None:
    policy = Policy(output=[Rule(guard="pii", action=Action.REDACT, categories=["EMAIL_ADDRESS"])])
    wider = tighten(
        policy, RequestGuardrails(output=[RequestRule(guard="pii", categories=["PERSON"])]), USABLE, DEFAULTS
    )
    assert wider.output[0].categories == ["EMAIL_ADDRESS", "PERSON"]
    # Asking for fewer cannot take one away; asking for a rule checking all leaves it checking all.
    same = tighten(
        policy, RequestGuardrails(output=[RequestRule(guard="pii", categories=[])]), USABLE, DEFAULTS
    )
    assert same.output[0].categories == ["EMAIL_ADDRESS"]
    everything = Policy(output=[Rule(guard="pii", action=Action.REDACT)])
    ask = RequestGuardrails(output=[RequestRule(guard="pii", categories=["PERSON"])])
    assert tighten(everything, ask, USABLE, DEFAULTS).output[0].categories is None
    # A rule a request adds counts what it asked (or everything).
    added = tighten(Policy(), ask, USABLE, DEFAULTS)
    assert added.output == [Rule(guard="pii", action=Action.BLOCK, categories=["PERSON"])]


def test_a_request_naming_an_unknown_category_is_refused_when_categories_are_known() -> None:
    ask = RequestGuardrails(output=[RequestRule(guard="pii", categories=["PERSN"])])
    with pytest.raises(PolicyError, match=r"^guardrails\.output\[0\]\.categories: unknown category PERSN"):
        tighten(Policy(), ask, USABLE, DEFAULTS, CATEGORIES)


def test_a_policy_naming_an_unknown_category_fails_at_start_naming_the_key() -> None:
    raw = {"policies": {"default": {"output": [{"guard": "pii", "categories": ["EMAIL"]}]}}}
    guards: dict[str, Any] = {"toxicity": WordGuard(), "pii": NameAndEmailGuard()}
    with pytest.raises(
        PolicyError, match=r"^policies\.default\.output\[0\]\.categories: unknown category EMAIL"
    ):
        create_app(settings_from_mapping(raw, environ={}), guards=guards)


def test_the_built_in_default_starts_with_a_pii_guard_that_has_fewer_entities() -> None:
    # The fake PII guard knows only e-mails: the default's output rule counts what it has.
    guards: dict[str, Any] = {"toxicity": WordGuard(), "pii": EmailGuard()}
    create_app(settings_from_mapping({}, environ={}), guards=guards)
