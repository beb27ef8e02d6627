"""Threat: a client loosens its tenant's policy through the request's own ``"guardrails"`` field.

Tightening used to keep one rule per guard (the last), so ``"guardrails": {}`` turned a policy of
``block`` at 0.9 plus ``flag`` at 0.2 into ``flag`` alone. The property test below states the contract
for any policy and any accepted request: what the policy blocks stays blocked, and what it removes from
a text (redaction, truncation) stays removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import ClassVar

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guards.pipeline import GuardEngine, most_severe, with_fallbacks
from guards.policy import (
    Action,
    FailMode,
    Policy,
    PolicyBook,
    PolicyError,
    RequestGuardrails,
    RequestRule,
    Revision,
    Rule,
    tighten,
)
from guards.verdict import JudgeContext, Span, Stage, Verdict
from tests.support.fake_guards import WordGuard
from tests.support.policy_harness import chat, guarded_client

TWO_RULES = [
    Rule(guard="toxicity", action=Action.BLOCK, thresholds={"toxicity": 0.9}),
    Rule(guard="toxicity", action=Action.FLAG, thresholds={"toxicity": 0.2}),
]


# --- the reported case, through the gateway ------------------------------------------------------


async def test_empty_guardrails_field_does_not_drop_a_block_rule_on_input() -> None:
    async with guarded_client(
        PolicyBook(default=Policy(input=TWO_RULES)), {"toxicity": WordGuard()}
    ) as client:
        plain = await client.post("/v1/chat/completions", json=chat("you BADWORD"))
        loosened = await client.post("/v1/chat/completions", json=chat("you BADWORD", guardrails={}))
    assert plain.status_code == 400
    assert loosened.status_code == 400
    assert loosened.json()["error"]["code"] == "content_filter"


async def test_empty_guardrails_field_does_not_drop_a_block_rule_on_output() -> None:
    async with guarded_client(
        PolicyBook(default=Policy(output=TWO_RULES)), {"toxicity": WordGuard()}
    ) as client:
        response = await client.post(
            "/v1/chat/completions", json=chat("say BADWORD", model="echo", guardrails={})
        )
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] is None


async def test_tightening_one_rule_of_a_guard_keeps_its_other_rules() -> None:
    # 0.5 tightens the block rule (0.9) and would loosen the flag rule (0.2): the flag rule stays as is.
    ask = {"input": [{"guard": "toxicity", "thresholds": {"toxicity": 0.5}}]}
    async with guarded_client(
        PolicyBook(default=Policy(input=TWO_RULES)), {"toxicity": WordGuard()}
    ) as client:
        response = await client.post("/v1/chat/completions", json=chat("you BADWORD", guardrails=ask))
    assert response.status_code == 400
    guards = response.json()["error"]["guardrails"]["input"]["guards"]
    assert [(g["action"], g["decision"]) for g in guards] == [("block", "block"), ("flag", "flag")]


def test_an_ask_looser_than_every_rule_of_its_guard_is_refused() -> None:
    ask = RequestGuardrails(input=[RequestRule(guard="toxicity", thresholds={"toxicity": 0.95})])
    usable, defaults = {"toxicity": frozenset(Stage)}, {"toxicity": {"toxicity": 0.5}}
    with pytest.raises(
        PolicyError, match=r"^guardrails.input\[0\].thresholds.toxicity: cannot raise 0.9 to 0.95"
    ):
        tighten(Policy(input=TWO_RULES), ask, usable, defaults)


def test_a_request_cannot_turn_restoring_on_where_the_policy_turns_it_off() -> None:
    kept = [Rule(guard="pii", action=Action.REDACT, restore=False)]
    usable: dict[str, frozenset[Stage]] = {"pii": frozenset(Stage)}
    ask = RequestGuardrails(input=[RequestRule(guard="pii", restore=True)])
    with pytest.raises(PolicyError, match=r"^guardrails.input\[0\].restore: cannot turn on"):
        tighten(Policy(input=kept), ask, usable, {})
    off = RequestGuardrails(input=[RequestRule(guard="pii", restore=False)])
    restoring = [Rule(guard="pii", action=Action.REDACT)]
    assert [r.restore for r in tighten(Policy(input=restoring), off, usable, {}).input] == [False]
    mixed = [*kept, Rule(guard="pii", action=Action.FLAG)]  # one rule restores: the ask leaves both be
    assert [r.restore for r in tighten(Policy(input=mixed), ask, usable, {}).input] == [False, True]


# --- the contract, for any policy and any accepted tightening -------------------------------------
#
# Texts are made of unique characters, so "removed from the output" is exact. Characters from three
# bands drive three scripted guards; the last digit of a code point is its score in tenths.

# CJK ideographs, which every normalised view leaves alone, in bands of 0x1000.
SCORED, SECRET, COPY, PLAIN, NAME = 0x4E00, 0x5E00, 0x6E00, 0x7E00, 0x8E00


def _band(char: str) -> int:
    return SCORED + (ord(char) - SCORED) // 0x1000 * 0x1000


def _score(char: str) -> float:
    return (ord(char) - _band(char)) % 10 / 10


class _ScriptedGuard:
    stages: ClassVar[frozenset[Stage]] = frozenset(Stage)
    config_type: ClassVar[type[msgspec.Struct]] = msgspec.Struct
    kind: ClassVar[str] = "scripted"
    label: ClassVar[str]
    default_thresholds: ClassVar[Mapping[str, float]]

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def categories(self) -> Sequence[str]:
        return [self.label]

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        return [self.verdict(text, thresholds.get(self.label, 0.5)) for text in texts]

    def verdict(self, text: str, threshold: float) -> Verdict:
        raise NotImplementedError


class ClassifierGuard(_ScriptedGuard):
    """Scores the text by its highest scored character; no spans (like toxicity)."""

    label = "toxicity"
    default_thresholds: ClassVar[Mapping[str, float]] = {"toxicity": 0.5}

    def verdict(self, text: str, thresholds: Mapping[str, float]) -> Verdict:
        score = max((_score(c) for c in text if _band(c) == SCORED), default=0.0)
        flagged = [self.label] if score >= thresholds.get(self.label, 0.5) else []
        return Verdict(self._name, not flagged, {self.label: score}, flagged)


class SpanGuard(_ScriptedGuard):
    """A span per run of characters of one of its bands, labelled by the band and scored by the run's
    first character; with a replacement (like PII) or without one (like the IP guard's licence spans)."""

    bands: ClassVar[dict[int, str]]
    replacement: ClassVar[str | None]

    @property
    def categories(self) -> Sequence[str]:
        return list(self.bands.values())

    def verdict(self, text: str, thresholds: Mapping[str, float]) -> Verdict:
        spans = []
        start = None
        for i, char in enumerate([*text, " "]):
            if start is not None and _band(char) != _band(text[start]):
                label = self.bands[_band(text[start])]
                if _score(text[start]) >= thresholds.get(label, 0.5):
                    spans.append(Span(start, i, label, _score(text[start]), self.replacement))
                start = None
            if start is None and _band(char) in self.bands:
                start = i
        flagged = sorted({span.label for span in spans})
        scores = {label: 1.0 if label in flagged else 0.0 for label in self.bands.values()}
        return Verdict(self._name, not flagged, scores, flagged, spans)


class SecretGuard(SpanGuard):
    """Two categories, like the PII guard: a rule may count only some of them."""

    bands, replacement = {SECRET: "SECRET", NAME: "NAME"}, "<SECRET>"
    default_thresholds: ClassVar[Mapping[str, float]] = {"SECRET": 0.5, "NAME": 0.5}


class CopyGuard(SpanGuard):
    bands, replacement = {COPY: "copy"}, None
    default_thresholds: ClassVar[Mapping[str, float]] = {"copy": 0.5}


GUARDS = {"tox": ClassifierGuard("tox"), "pii": SecretGuard("pii"), "ip": CopyGuard("ip")}
CATEGORIES = {name: list(guard.categories) for name, guard in GUARDS.items()}
TENTHS = st.integers(0, 10).map(lambda n: n / 10)


SCORES = st.lists(st.integers(0, 9), min_size=1, max_size=3)
WORDS = st.lists(st.tuples(st.sampled_from([PLAIN, SCORED, SECRET, COPY, NAME]), SCORES), max_size=6)


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Words of unique characters: plain, scored, secret, name or copied runs."""
    counter = 0
    words = []
    for band, scores in draw(WORDS):
        word = ""
        for score in scores:
            counter += 1
            word += chr(band + counter * 10 + score)
        words.append(word)
    return " ".join(words)


def _some_categories(guard: str) -> st.SearchStrategy[list[str] | None]:
    return st.none() | st.lists(st.sampled_from(CATEGORIES[guard]), unique=True)


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    guard = draw(st.sampled_from(sorted(GUARDS)))
    thresholds = draw(st.dictionaries(st.sampled_from(CATEGORIES[guard]), TENTHS))
    action = draw(st.sampled_from(list(Action)))
    fallbacks = [a for a in Action if a is not Action.REVISE]
    return Rule(
        guard=guard,
        action=action,
        thresholds=thresholds,
        categories=draw(_some_categories(guard)),
        revision=Revision(fallback=draw(st.sampled_from(fallbacks))) if action is Action.REVISE else None,
    )


@st.composite
def asks(draw: st.DrawFn) -> RequestRule:
    guard = draw(st.sampled_from(sorted(GUARDS)))
    return RequestRule(
        guard=guard,
        action=draw(st.none() | st.sampled_from(list(Action))),
        thresholds=draw(st.dictionaries(st.sampled_from(CATEGORIES[guard]), TENTHS)),
        on_error=draw(st.none() | st.sampled_from(list(FailMode))),
        categories=draw(_some_categories(guard)),
    )


def _run(engine: GuardEngine, rules: list[Rule], text: str, fallen: bool = False) -> tuple[str, str]:
    """The decision and text; ``fallen``: as served when no revision passed (the revise rules' fallbacks)."""
    outcome = asyncio.run(engine.run(Stage.OUTPUT, rules, [text]))
    if fallen:
        outcome = with_fallbacks(outcome, rules, [text])
    return outcome.texts[0].decision, outcome.texts[0].text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy_rules=st.lists(rules(), max_size=5),
    asked=st.lists(asks(), max_size=4),
    sample=st.lists(texts(), min_size=1, max_size=4),
)
def test_no_accepted_tightening_unblocks_or_uncovers_any_text(
    policy_rules: list[Rule], asked: list[RequestRule], sample: list[str]
) -> None:
    policy = Policy(output=policy_rules)
    defaults = {name: dict(guard.default_thresholds) for name, guard in GUARDS.items()}
    try:
        tightened = tighten(
            policy,
            RequestGuardrails(output=asked),
            {name: frozenset(Stage) for name in GUARDS},
            defaults,
            CATEGORIES,
        )
    except PolicyError:
        return  # refused: nothing was loosened
    # No rule is dropped: each keeps its place and guard, and is as strict or stricter.
    assert len(tightened.output) >= len(policy.output)
    for before, after in zip(policy.output, tightened.output, strict=False):
        assert after.guard == before.guard
        assert after.action.severity >= before.action.severity
        for category, value in {**defaults[before.guard], **before.thresholds}.items():
            assert after.thresholds.get(category, defaults[after.guard][category]) <= value
        assert after.on_error is FailMode.CLOSED or before.on_error is FailMode.OPEN
        # Every category the rule counted still counts (None: all of them).
        assert after.categories is None or (
            before.categories is not None and set(before.categories) <= set(after.categories)
        )
    engine = GuardEngine(GUARDS)
    for text, fallen in [(text, fallen) for text in sample for fallen in (False, True)]:
        decision, out = _run(engine, policy.output, text, fallen)
        tight_decision, tight_out = _run(engine, tightened.output, text, fallen)
        assert most_severe([decision, tight_decision]) == tight_decision, (decision, tight_decision)
        if tight_decision not in ("block", "revise") and decision not in ("block", "revise"):
            removed = {c for c in text if c != " "} - set(out)
            assert not removed & set(tight_out), (text, out, tight_out)


def test_asking_truncate_over_redact_cannot_release_what_the_redaction_fallback_blocked() -> None:
    """Found by the property test on a fresh machine: a guard whose spans cannot be rewritten makes a
    redact rule block, while a truncate rule would release the text before the span. Asking for
    ``truncate`` must not turn that block into a truncation."""
    policy = Policy(output=[Rule(guard="ip", action=Action.REDACT)])
    defaults = {name: dict(guard.default_thresholds) for name, guard in GUARDS.items()}
    asked = RequestGuardrails(output=[RequestRule(guard="ip", action=Action.TRUNCATE)])
    tightened = tighten(policy, asked, {name: frozenset(Stage) for name in GUARDS}, defaults)
    engine = GuardEngine(GUARDS)
    text = "渏"
    assert _run(engine, policy.output, text)[0] == "block"
    assert _run(engine, tightened.output, text)[0] == "block"


@pytest.mark.parametrize("stage", ["input", "output"])
def test_a_request_never_asks_for_revise(stage: str) -> None:
    """Revising spends the operator's critic calls, and a revise rule's fallback is the operator's to
    choose: a request may turn a revise rule into block, never ask for revise (on a new rule either)."""
    usable = {"tox": frozenset(Stage), "pii": frozenset(Stage)}
    policy = Policy(output=[Rule(guard="tox", action=Action.REDACT)])
    for guard in ("tox", "pii"):
        ask = RequestGuardrails(**{stage: [RequestRule(guard=guard, action=Action.REVISE)]})
        with pytest.raises(PolicyError, match=rf"^guardrails.{stage}\[0\].action: a request cannot ask"):
            tighten(policy, ask, usable, {})


def test_a_request_may_turn_revise_into_block_never_into_something_milder() -> None:
    policy = Policy(output=[Rule(guard="tox", action=Action.REVISE)])
    usable = {"tox": frozenset(Stage)}
    block = RequestGuardrails(output=[RequestRule(guard="tox", action=Action.BLOCK)])
    assert [r.action for r in tighten(policy, block, usable, {}).output] == [Action.BLOCK]
    for milder in (Action.TRUNCATE, Action.REDACT, Action.ANNOTATE, Action.FLAG):
        ask = RequestGuardrails(output=[RequestRule(guard="tox", action=milder)])
        with pytest.raises(PolicyError, match=r"cannot loosen 'revise'"):
            tighten(policy, ask, usable, {})
