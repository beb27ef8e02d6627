"""Input verdicts kept per tenant (``guards.verdict_cache``): a conversation's earlier messages are judged
once; another tenant's identical text is judged afresh (no timing side channel); what is kept is bounded."""

from __future__ import annotations

from guards.pipeline import GuardEngine
from guards.policy import Action, Rule
from guards.verdict import JudgeContext, Stage, Verdict
from guards.verdict_cache import VerdictCache
from tests.support.fake_guards import EmailGuard, WordGuard


class TextOnlyEmailGuard(EmailGuard):
    """The suite's e-mail guard (redacts addresses), declared to judge the text alone."""

    context_free = True


class TextOnlyWordGuard(WordGuard):
    context_free = True


def _email_guard(context_free: bool = True) -> EmailGuard:
    return TextOnlyEmailGuard("counting") if context_free else EmailGuard("counting")


def _judged(guard: EmailGuard | WordGuard) -> list[str]:
    return [text for call in guard.calls for text in call]


RULE = Rule(guard="counting", action=Action.REDACT)


async def _judge(engine: GuardEngine, texts: list[str], tenant: str, stage: Stage = Stage.INPUT) -> list[str]:
    outcome = await engine.run(stage, [RULE], texts, JudgeContext(tenant=tenant))
    return [text.text for text in outcome.texts]


async def test_a_conversations_earlier_messages_are_judged_once() -> None:
    guard = _email_guard()
    engine = GuardEngine({"counting": guard}, cache=VerdictCache())
    first = await _judge(engine, ["You are a helpful assistant.", "Is me@example.org safe?"], "acme")
    second = await _judge(
        engine, ["You are a helpful assistant.", "Is me@example.org safe?", "It is.", "And now?"], "acme"
    )
    assert _judged(guard) == ["You are a helpful assistant.", "Is me@example.org safe?", "It is.", "And now?"]
    assert first == ["You are a helpful assistant.", "Is <EMAIL_ADDRESS> safe?"]
    assert second[:2] == first  # the cached verdicts redact as the first judgement did


async def test_another_tenants_identical_text_is_judged_afresh() -> None:
    """A shared cache would answer the second tenant faster when the first had sent the same text: a
    probe for a known e-mail address or name. Keyed by tenant, the second is judged like any new text."""
    guard = _email_guard()
    engine = GuardEngine({"counting": guard}, cache=VerdictCache())
    await _judge(engine, ["Is jane@example.com a customer?"], "acme")
    await _judge(engine, ["Is jane@example.com a customer?"], "rival")
    assert _judged(guard) == ["Is jane@example.com a customer?"] * 2


async def test_no_tenant_output_and_guards_that_read_context_are_never_cached() -> None:
    guard = _email_guard()
    engine = GuardEngine({"counting": guard}, cache=VerdictCache())
    for _ in range(2):
        await _judge(engine, ["no tenant"], "")
        await _judge(engine, ["an answer"], "acme", Stage.OUTPUT)
    assert _judged(guard) == ["no tenant", "an answer"] * 2
    contextual = _email_guard(context_free=False)
    engine = GuardEngine({"counting": contextual}, cache=VerdictCache())
    for _ in range(2):
        await _judge(engine, ["reads its sources"], "acme")
    assert _judged(contextual) == ["reads its sources"] * 2


async def test_a_failed_judgement_is_not_kept() -> None:
    guard = TextOnlyWordGuard("counting")
    guard.fail = True
    cache = VerdictCache()
    engine = GuardEngine({"counting": guard}, cache=cache)
    outcome = await engine.run(Stage.INPUT, [RULE], ["hello"], JudgeContext(tenant="acme"))
    assert outcome.texts[0].decision == "block"  # fails closed by default
    assert len(cache) == 0


def test_keys_separate_tenants_guards_thresholds_and_categories() -> None:
    cache = VerdictCache()
    base = cache.key("acme", "pii", {"X": 0.5}, None, "text")
    assert base is not None
    assert base != cache.key("rival", "pii", {"X": 0.5}, None, "text")
    assert base != cache.key("acme", "toxicity", {"X": 0.5}, None, "text")
    assert base != cache.key("acme", "pii", {"X": 0.6}, None, "text")
    assert base != cache.key("acme", "pii", {"X": 0.5}, ["EMAIL_ADDRESS"], "text")
    assert cache.key("", "pii", {}, None, "text") is None
    assert VerdictCache(max_text_chars=3).key("acme", "pii", {}, None, "text") is None


def test_a_flood_of_distinct_texts_cannot_grow_the_cache_past_its_bounds() -> None:
    cache = VerdictCache(max_entries=10, max_chars=5_000)
    for i in range(1000):
        key = cache.key("acme", "pii", {}, None, f"text {i}")
        assert key is not None
        cache.put(key, Verdict("pii", False, rewritten="x" * 400))
        assert len(cache) <= 10
        assert cache.chars <= 5_000
    newest = cache.key("acme", "pii", {}, None, "text 999")
    oldest = cache.key("acme", "pii", {}, None, "text 0")
    assert newest is not None
    assert oldest is not None
    assert cache.get(newest) is not None
    assert cache.get(oldest) is None
