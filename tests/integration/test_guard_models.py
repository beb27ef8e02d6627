"""The real guards on real models: the embedded toxicity BiLSTM (the default) and the classic tier,
detoxify checkpoints in detoxify's own format (tiny, random weights, real architectures), and presidio
on spaCy's small English pipeline."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from guards.metrics import GuardMetrics
from guards.models.classic_toxicity import classic_predict
from guards.pii import EntityAction, PiiConfig, PiiGuard
from guards.registry import GuardResources
from guards.runner import RunnerPool
from guards.toxicity import CascadeConfig, DetoxifyConfig, ToxicityConfig, ToxicityGuard
from tests.support.detoxify_checkpoints import build_checkpoint
from tests.support.pii_quality import score_pii

pytestmark = pytest.mark.asyncio(loop_scope="session")
DATA = Path(__file__).resolve().parents[1] / "data"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def resources(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GuardResources]:
    pool = RunnerPool(GuardMetrics(CollectorRegistry()))  # metrics: tests read what each runner was given
    yield GuardResources(pool, pool.metrics, tmp_path_factory.mktemp("guards"))
    await pool.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def classic(resources: GuardResources) -> ToxicityGuard:
    """The classic tier alone: the embedded default before the BiLSTM (the baseline)."""
    guard = ToxicityGuard("toxicity-classic", ToxicityConfig(classic=True, bilstm=None), resources)
    await guard.start()
    return guard


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def default_toxicity(resources: GuardResources) -> ToxicityGuard:
    guard = ToxicityGuard("toxicity", ToxicityConfig(), resources)
    await guard.start()
    return guard


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pii(resources: GuardResources) -> PiiGuard:
    redact, mask, block, hashed = (
        EntityAction.REDACT,
        EntityAction.MASK,
        EntityAction.BLOCK,
        EntityAction.HASH,
    )
    config = PiiConfig(entities={
        "PERSON": redact, "EMAIL_ADDRESS": redact, "PHONE_NUMBER": redact, "CREDIT_CARD": mask,
        "US_SSN": block, "IBAN_CODE": mask, "IP_ADDRESS": hashed,
    })  # fmt: skip
    guard = PiiGuard("pii", config, resources)
    await guard.start()
    return guard


# --- toxicity ----------------------------------------------------------------------------------


def _labelled() -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (DATA / "toxicity_labelled.jsonl").read_text().splitlines()]
    assert len(rows) >= 200
    return rows


async def _quality(guard: ToxicityGuard, rows: list[dict[str, Any]]) -> tuple[float, float, Counter[str]]:
    """Precision and recall at the default thresholds, and how many texts of each kind were judged right."""
    verdicts = await guard.judge([r["text"] for r in rows], guard.default_thresholds)
    predicted = [not v.allowed for v in verdicts]
    truth = [bool(r["toxic"]) for r in rows]
    tp = sum(p and t for p, t in zip(predicted, truth, strict=True))
    fp = sum(p and not t for p, t in zip(predicted, truth, strict=True))
    fn = sum(t and not p for p, t in zip(predicted, truth, strict=True))
    by_kind = Counter(r["kind"] for r, p in zip(rows, predicted, strict=True) if p == r["toxic"])
    print(
        f"{guard.name}: precision {tp / (tp + fp):.3f}, recall {tp / (tp + fn):.3f}; right by kind {by_kind}"
    )
    return tp / (tp + fp), tp / (tp + fn), by_kind


async def test_classic_tier_quality_on_the_labelled_set(classic: ToxicityGuard) -> None:
    precision, recall, by_kind = await _quality(classic, _labelled())
    # Measured 0.907 / 0.408 (docs/guards/toxicity.md, "before"). Floors a little under, so a regression
    # fails.
    assert precision >= 0.85
    assert recall >= 0.38
    assert by_kind["profanity"] == 20  # what it is good at
    assert by_kind["benign"] == 30


async def test_default_bilstm_quality_on_the_labelled_set(
    default_toxicity: ToxicityGuard, classic: ToxicityGuard
) -> None:
    rows = _labelled()
    precision, recall, by_kind = await _quality(default_toxicity, rows)
    # Measured 0.900 / 0.450 (docs/guards/toxicity.md, "after"), at the untuned default threshold 0.5.
    # Floors a little under.
    assert precision >= 0.85
    assert recall >= 0.43
    assert by_kind["profanity"] == 20
    assert by_kind["benign"] >= 29
    assert by_kind["identity_attack"] >= 10  # the classic tier gets 9
    _, classic_recall, _ = await _quality(classic, rows)
    assert recall > classic_recall  # the default is better than what it replaced, on the same run


async def test_default_runs_the_bilstm_through_the_runner_with_six_categories(
    default_toxicity: ToxicityGuard, resources: GuardResources
) -> None:
    before = _runner_items(resources, "bilstm-toxicity")
    texts = ["What a lovely morning for a walk.", "I will burn your house down with you inside it."]
    verdicts = await default_toxicity.judge(texts, default_toxicity.default_thresholds)
    assert _runner_items(resources, "bilstm-toxicity") - before == 2
    assert [v.evidence[0].detail for v in verdicts] == ["bilstm", "bilstm"]
    assert set(default_toxicity.categories) == set(verdicts[0].scores) == {
        "toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack",
    }  # fmt: skip
    assert verdicts[0].allowed
    assert not verdicts[1].allowed
    assert "toxicity" in verdicts[1].categories


async def test_classic_in_front_of_the_bilstm_is_a_cascade(resources: GuardResources) -> None:
    config = ToxicityConfig(classic=True, cascade=CascadeConfig(clear_below=0.2, flag_above=0.95))
    guard = ToxicityGuard("classic-bilstm", config, resources)
    await guard.start()
    texts = ["What a lovely morning for a walk.", "you fucking piece of shit", "that movie sucked"]
    before = _runner_items(resources, "bilstm-toxicity")
    verdicts = await guard.judge(texts, guard.default_thresholds)
    assert [v.evidence[0].detail for v in verdicts] == ["classic", "classic", "bilstm"]
    assert _runner_items(resources, "bilstm-toxicity") - before == 1  # the unsure text alone


async def test_detoxify_original_checkpoint_loads_offline_and_scores(
    resources: GuardResources, tmp_path: Path
) -> None:
    checkpoint, config_dir = build_checkpoint(tmp_path, "original")
    detoxify = DetoxifyConfig(checkpoint=str(checkpoint), config_dir=str(config_dir), device="cpu")
    guard = ToxicityGuard("tox", ToxicityConfig(classic=False, detoxify=detoxify), resources)
    await guard.start()
    verdicts = await guard.judge(["hello there", "another text"] * 5, guard.default_thresholds)
    assert len(verdicts) == 10
    assert set(verdicts[0].scores) == {
        "toxicity",
        "severe_toxicity",
        "obscene",
        "threat",
        "insult",
        "identity_attack",
    }
    assert all(0.0 <= s <= 1.0 for v in verdicts for s in v.scores.values())
    assert verdicts[0].evidence[0].detail == "detoxify"
    # Thresholds decide: at 0 every category flags, at 1 none does (random weights score near 0.5).
    assert not (await guard.judge(["x"], dict.fromkeys(guard.default_thresholds, 0.0)))[0].allowed
    assert (await guard.judge(["x"], dict.fromkeys(guard.default_thresholds, 1.0)))[0].allowed


async def test_detoxify_unbiased_checkpoint_reports_only_toxicity_categories(
    resources: GuardResources, tmp_path: Path
) -> None:
    checkpoint, config_dir = build_checkpoint(tmp_path, "unbiased")
    detoxify = DetoxifyConfig(checkpoint=str(checkpoint), config_dir=str(config_dir), device="cpu")
    guard = ToxicityGuard("tox-unbiased", ToxicityConfig(classic=False, detoxify=detoxify), resources)
    await guard.start()
    (verdict,) = await guard.judge(["some text"], dict.fromkeys(guard.default_thresholds, 0.0))
    assert "muslim" in verdict.scores  # identity mentions are reported as context...
    assert "muslim" not in verdict.categories  # ...and never flag
    assert "sexual_explicit" in verdict.categories


async def test_cascade_runs_detoxify_only_where_the_classic_tier_is_unsure(
    resources: GuardResources, tmp_path: Path
) -> None:
    checkpoint, config_dir = build_checkpoint(tmp_path, "original", seed=1)
    detoxify = DetoxifyConfig(checkpoint=str(checkpoint), config_dir=str(config_dir), device="cpu")
    config = ToxicityConfig(detoxify=detoxify, cascade=CascadeConfig(clear_below=0.2, flag_above=0.95))
    guard = ToxicityGuard("cascade", config, resources)
    await guard.start()
    texts = ["What a lovely morning for a walk.", "you fucking piece of shit", "that movie sucked"]
    classic = classic_predict(texts)
    assert classic[0] < 0.2, classic  # sure it is clean
    assert classic[1] >= 0.95, classic  # sure it is toxic
    assert 0.2 <= classic[2] < 0.95, classic  # unsure: this one must go on to detoxify
    detoxify_runs = _runner_items(resources, "detoxify")
    verdicts = await guard.judge(texts, guard.default_thresholds)
    tiers = [v.evidence[0].detail for v in verdicts]
    assert tiers == ["classic", "classic", "detoxify"]
    assert not verdicts[1].allowed
    assert set(verdicts[2].scores) > {"toxicity"}  # detoxify's six categories, not the classic score
    assert _runner_items(resources, "detoxify") - detoxify_runs == 1  # the unsure text alone


def _runner_items(resources: GuardResources, kind: str) -> float:
    """Texts the runners of ``kind`` have been given so far (from the batch-size histogram's sum)."""
    assert resources.runners.metrics is not None
    samples = resources.runners.metrics.batch_size.collect()[0].samples
    return sum(s.value for s in samples if s.name.endswith("_sum") and kind in s.labels["runner"])


# --- PII ---------------------------------------------------------------------------------------


async def test_pii_per_entity_actions(pii: PiiGuard) -> None:
    text = "I am John Smith, email john.smith@example.com, card 4111 1111 1111 1111."
    (verdict,) = await pii.judge([text], pii.default_thresholds)
    assert not verdict.allowed
    assert {"PERSON", "EMAIL_ADDRESS", "CREDIT_CARD"} <= set(verdict.categories)
    assert verdict.rewritten == "I am <PERSON>, email <EMAIL_ADDRESS>, card ***************1111."
    (blocked,) = await pii.judge(["My social security number is 536-22-8765."], pii.default_thresholds)
    assert "US_SSN" in blocked.categories
    assert blocked.rewritten is None  # a block entity cannot be redacted away


async def test_pii_hash_is_a_stable_pseudonym(pii: PiiGuard) -> None:
    first, second = await pii.judge(
        ["Server 10.0.0.7 is down", "Reboot 10.0.0.7 now"], pii.default_thresholds
    )
    pseudonym = first.rewritten.split()[1] if first.rewritten else ""
    assert len(pseudonym) == 64
    assert "10.0.0.7" not in (first.rewritten or "")
    assert second.rewritten == f"Reboot {pseudonym} now"


async def test_pii_thresholds_and_clean_text(pii: PiiGuard) -> None:
    (clean,) = await pii.judge(["What is the boiling point of water at sea level?"], pii.default_thresholds)
    assert clean.allowed
    phone = "Call me on 212-555-0199 tomorrow."
    (found,) = await pii.judge([phone], pii.default_thresholds)
    assert "PHONE_NUMBER" in found.categories  # presidio scores phones 0.4: the default threshold keeps them
    (strict,) = await pii.judge([phone], {**pii.default_thresholds, "PHONE_NUMBER": 0.9})
    assert "PHONE_NUMBER" not in strict.categories


# Measured with the default configuration (docs/guards/*.md). Floors sit a little under each figure.
PII_FLOORS = {
    "PERSON": (0.65, 0.57),
    "EMAIL_ADDRESS": (0.95, 0.95),
    "CREDIT_CARD": (0.95, 0.70),
    "PHONE_NUMBER": (0.65, 0.30),
    "IBAN_CODE": (0.95, 0.95),
    "IP_ADDRESS": (0.95, 0.95),
    "US_SSN": (0.95, 0.95),
}


async def test_pii_quality_on_presidio_evaluator_sentences(resources: GuardResources) -> None:
    guard = PiiGuard("pii-default", PiiConfig(), resources)
    await guard.start()
    rows = [
        json.loads(line)
        for line in (DATA / "pii" / "presidio_evaluator_sentences.jsonl").read_text().splitlines()
    ]
    assert len(rows) >= 400
    verdicts = await guard.judge([row["text"] for row in rows], guard.default_thresholds)
    figures = score_pii(rows, verdicts, list(guard.config.entities))
    for entity, (precision, recall, gold, predicted) in sorted(figures.items()):
        print(
            f"{entity:15} precision {precision:.3f} recall {recall:.3f} (gold {gold}, predicted {predicted})"
        )
    for entity, (min_precision, min_recall) in PII_FLOORS.items():
        precision, recall, _, _ = figures[entity]
        assert precision >= min_precision, entity
        assert recall >= min_recall, entity
