"""The default output PII rule on the real presidio guard (issue 13): general knowledge passes unchanged,
private data is still redacted, and an English model finds no "names" in other languages.

The figures printed here are docs/guards/pii.md's ("Measured quality").
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from guards.pii import PiiConfig, PiiGuard
from guards.pipeline import GuardEngine
from guards.policy import Rule, default_policy
from guards.registry import GuardResources
from guards.runner import RunnerPool
from guards.verdict import Stage

pytestmark = pytest.mark.asyncio(loop_scope="module")
DATA = Path(__file__).resolve().parents[1] / "data" / "pii"


def _rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


def _rule(stage: Stage) -> Rule:
    """The default rule, with time to judge a whole data set in one call on a busy machine: these tests
    measure decisions, not latency (a timeout would fail closed and count as a change)."""
    [rule] = [rule for rule in default_policy().rules(stage) if rule.guard == "pii"]
    return msgspec.structs.replace(rule, timeout_ms=300_000)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[RunnerPool]:
    runners = RunnerPool()
    yield runners
    await runners.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pii(pool: RunnerPool, tmp_path_factory: pytest.TempPathFactory) -> PiiGuard:
    guard = PiiGuard("pii", PiiConfig(), GuardResources(pool, None, tmp_path_factory.mktemp("pii")))
    await guard.start()
    return guard


async def test_general_knowledge_passes_the_default_output_rule_and_private_data_does_not(
    pii: PiiGuard,
) -> None:
    rows = _rows("general_knowledge_answers.jsonl")
    knowledge = [row["text"] for row in rows if not row["expect_changed"]]
    private = [row["text"] for row in rows if row["expect_changed"]]
    assert len(knowledge) >= 120
    engine = GuardEngine({"pii": pii})
    outcome = await engine.run(Stage.OUTPUT, [_rule(Stage.OUTPUT)], knowledge + private)
    changed = [o.text for text, o in zip(knowledge, outcome.texts, strict=False) if o.text != text]
    redacted = [o for o in outcome.texts[len(knowledge) :] if o.decision == "redact"]
    print(
        f"default output rule: {len(changed)}/{len(knowledge)} general-knowledge answers changed; "
        f"{len(redacted)}/{len(private)} answers with private data redacted"
    )
    assert changed == []  # measured 0/132 (96/132 before issue 13: names, and years taken for phones)
    assert len(redacted) == len(private)
    for text, kept in zip(private, outcome.texts[len(knowledge) :], strict=True):
        assert "<" in kept.text or "*" in kept.text, (text, kept.text)


async def test_no_person_guesses_in_text_clearly_in_another_language(pii: PiiGuard) -> None:
    rows = _rows("non_english_answers.jsonl")
    assert len(rows) >= 40
    assert {row["language"] for row in rows} == {"fr", "es", "de", "it", "pt"}
    texts = [row["text"] for row in rows]
    verdicts = await pii.judge(texts, pii.default_thresholds)
    guessed = [t for t, v in zip(texts, verdicts, strict=True) if any(s.label == "PERSON" for s in v.spans)]
    outcome = await GuardEngine({"pii": pii}).run(Stage.OUTPUT, [_rule(Stage.OUTPUT)], texts)
    changed = [o for text, o in zip(texts, outcome.texts, strict=True) if o.text != text]
    print(f"non-English answers: PERSON guessed in {len(guessed)}/{len(texts)}: {guessed}")
    print(f"non-English answers: {len(changed)}/{len(texts)} changed by the default output rule")
    # Measured 2/45 (34/45 before issue 13): two whose only letters are the guesses themselves, or
    # where English words ("in French") make the language unclear.
    assert len(guessed) <= 2
    assert changed == []
    (issue_case,) = await pii.judge(["Bonjour! Bonne chance, bons amis!"], pii.default_thresholds)
    assert issue_case.allowed, issue_case.spans


async def test_mixed_text_is_judged_per_sentence(pii: PiiGuard) -> None:
    text = "William Shakespeare wrote Hamlet. In French one says: Bonne chance, bons amis!"
    (verdict,) = await pii.judge([text], pii.default_thresholds)
    found = [text[s.start : s.end] for s in verdict.spans if s.label == "PERSON"]
    assert found == ["William Shakespeare"]


async def test_patterns_apply_to_every_language(pii: PiiGuard) -> None:
    text = "Écrivez-moi à claire.dubois@exemple.fr ou appelez le +33 6 12 34 56 78, merci beaucoup."
    (verdict,) = await pii.judge([text], pii.default_thresholds)
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER"} <= set(verdict.categories)


async def test_allow_list_lets_named_values_pass(
    pool: RunnerPool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = PiiConfig(allow_list=["william shakespeare ", "press@globe.example"])
    guard = PiiGuard("pii-allow", config, GuardResources(pool, None, tmp_path_factory.mktemp("allow")))
    await guard.start()
    text = "William Shakespeare wrote to Maria Lopez; write to press@globe.example or maria@example.com."
    (verdict,) = await guard.judge([text], guard.default_thresholds)
    assert (
        verdict.rewritten
        == "William Shakespeare wrote to <PERSON>; write to press@globe.example or <EMAIL_ADDRESS>."
    )
    assert guard.languages == ("en",)


async def test_a_year_is_not_a_phone_number(pii: PiiGuard) -> None:
    (verdict,) = await pii.judge(["The Treaty of Westphalia was signed in 1648."], pii.default_thresholds)
    assert "PHONE_NUMBER" not in verdict.categories
