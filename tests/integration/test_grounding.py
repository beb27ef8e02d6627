"""The grounding guard on real embeddings (all-MiniLM-L6-v2 from PyPI), tiny NLI models built here,
and a citation database built with the real indexing code."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from guards.grounding.citation_db import CitationIndex, build_index
from guards.grounding.guard import GroundingConfig, GroundingGuard
from guards.metrics import GuardMetrics
from guards.models.sentence_embeddings import load_embedder
from guards.registry import GuardResources
from guards.runner import RunnerPool
from guards.verdict import JudgeContext, Source
from tests.support.nli_models import build_nli_model

pytestmark = pytest.mark.asyncio(loop_scope="session")
DATA = Path(__file__).resolve().parents[1] / "data"
HARBOUR = Source(
    "doc-harbor",
    "The harbour of Vela opened in 1893. It handles 4,000 ships a year. "
    "The mayor, Anna Ruiz, plans an expansion.",
    "Vela harbour",
    "https://example.org/vela",
)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def resources(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GuardResources]:
    pool = RunnerPool(GuardMetrics(CollectorRegistry()))
    yield GuardResources(pool, pool.metrics, tmp_path_factory.mktemp("grounding"))
    await pool.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def grounding(resources: GuardResources) -> GroundingGuard:
    guard = GroundingGuard("grounding", GroundingConfig(), resources)
    await guard.start()
    return guard


async def _labels(guard: GroundingGuard, answer: str, sources: list[Source]) -> list[str]:
    (verdict,) = await guard.judge([answer], guard.default_thresholds, JudgeContext(sources=sources))
    return [evidence.kind for evidence in verdict.evidence]


async def test_claims_numbers_names_and_citations(grounding: GroundingGuard) -> None:
    cases = {
        "The harbour in Vela has been open since 1893.": "supported",
        "It handles 5,000 ships every year.": "contradicted",
        "The mayor Pedro Gomez plans to expand it.": "contradicted",
        "The harbour is famous for its seafood festival.": "unsupported",
        "Vela's harbour handles 4,000 ships a year [2].": "dangling_citation",
        "Vela's harbour handles 4,000 ships a year [doc-harbor].": "supported",
        "Vela's harbour handles 4,000 ships a year (https://example.org/vela).": "supported",
    }
    for answer, expected in cases.items():
        assert await _labels(grounding, answer, [HARBOUR]) == [expected], answer


async def test_wrong_citation(grounding: GroundingGuard) -> None:
    other = Source("doc-bakery", "The bakery on Main Street sells rye bread every morning.")
    assert await _labels(grounding, "Vela's harbour handles 4,000 ships a year [2].", [HARBOUR, other]) == [
        "wrong_citation"
    ]


async def test_report_scores_spans_and_no_sources(grounding: GroundingGuard) -> None:
    answer = "The harbour of Vela opened in 1893. It handles 9,000 ships a year. Is that a lot?"
    (verdict,) = await grounding.judge(
        [answer], grounding.default_thresholds, JudgeContext(sources=[HARBOUR])
    )
    assert verdict.scores["groundedness"] == 0.5  # two claims (the question is not one), one supported
    assert verdict.categories == ["unsupported", "contradicted"]
    (span,) = verdict.spans
    assert answer[span.start : span.end] == "It handles 9,000 ships a year."
    assert span.replacement == "It handles 9,000 ships a year. [unsupported]"
    # Without sources there is nothing to check against: allowed, and said so by the score.
    (unchecked,) = await grounding.judge([answer], grounding.default_thresholds, JudgeContext())
    assert unchecked.allowed


# Contradictions the lexical checks cannot see by numbers or names: negation said in other words,
# antonyms ("rose" / "fell") and reversed relations ("A acquired B" / "B acquired A"), with true
# paraphrases of the same sources beside them. Rows g247 on; reported apart from the original set.
PARAPHRASED_KINDS = frozenset({"paraphrased_negation", "antonym", "reversed_relation", "relation_paraphrase"})


class Figures(NamedTuple):
    precision: float
    recall: float
    confusion: Counter[tuple[str, str]]
    flagged_by_kind: Counter[str]
    rows_by_kind: Counter[str]


async def _figures(guard: GroundingGuard, rows: list[dict[str, Any]]) -> Figures:
    """Precision and recall for "not supported" (what the guard should flag), and truth → judged."""
    tp = fp = fn = 0
    confusion: Counter[tuple[str, str]] = Counter()
    flagged_by_kind: Counter[str] = Counter()
    for row in rows:
        sources = [Source(s["id"], s["text"], s.get("title", ""), s.get("url", "")) for s in row["sources"]]
        (verdict,) = await guard.judge(
            [row["answer"]], guard.default_thresholds, JudgeContext(sources=sources)
        )
        flagged, truth = not verdict.allowed, row["label"] != "supported"
        tp += flagged and truth
        fp += flagged and not truth
        fn += truth and not flagged
        confusion[(row["label"], verdict.evidence[0].kind if verdict.evidence else "none")] += 1
        flagged_by_kind[row["kind"]] += flagged
    kinds = Counter(row["kind"] for row in rows)
    return Figures(tp / max(1, tp + fp), tp / max(1, tp + fn), confusion, flagged_by_kind, kinds)


def _report(name: str, rows: list[dict[str, Any]], figures: Figures) -> None:
    print(
        f"grounding, {name}, 'not supported': precision {figures.precision:.3f}, "
        f"recall {figures.recall:.3f} on {len(rows)} cases"
    )
    for (truth_label, predicted), count in sorted(figures.confusion.items()):
        print(f"  {truth_label:18} -> {predicted:18} {count}")
    for kind, count in sorted(figures.rows_by_kind.items()):
        print(f"  kind {kind:22} flagged {figures.flagged_by_kind[kind]} / {count}")


async def test_quality_on_the_labelled_set(grounding: GroundingGuard) -> None:
    rows = [json.loads(line) for line in (DATA / "grounding_labelled.jsonl").read_text().splitlines()]
    original = [row for row in rows if row["kind"] not in PARAPHRASED_KINDS]
    paraphrased = [row for row in rows if row["kind"] in PARAPHRASED_KINDS]
    assert len(original) == 246
    assert len(paraphrased) >= 40
    old, new = await _figures(grounding, original), await _figures(grounding, paraphrased)
    _report("original set", original, old)
    _report("paraphrased contradictions", paraphrased, new)
    # Measured 0.741 / 0.830 (docs/guards/grounding.md); floors a little under.
    assert old.precision >= 0.70
    assert old.recall >= 0.80
    assert old.confusion[("dangling_citation", "dangling_citation")] == 13
    # Measured 1.000 / 0.226 (docs/guards/grounding.md): negations 6 / 6 flagged, antonyms 1 / 16,
    # reversed relations 0 / 9, true paraphrases 0 / 10. The embedded scorer sees a negation only one
    # side states, and little else here. Floors a little under. Flagging everything (precision 0.756),
    # nothing, or dropping the negation check (recall 0.065) fails them.
    assert new.precision >= 0.85
    assert new.recall >= 0.19


# Each layout with logits that leave no doubt, and the verdict they must give. Before label names were
# matched whole, "not_entailment" and "inconsistent" were read as support, inverting these verdicts.
NLI_CASES = [
    ("mnli", [0.0, 0.0, 6.0], "supported"),
    ("mnli", [6.0, 0.0, 0.0], "contradicted"),
    ("binary", [-3.0, 3.0], "unsupported"),
    ("binary", [3.0, -3.0], "supported"),
    ("consistency", [-3.0, 3.0], "contradicted"),
    ("hhem", [6.0], "supported"),
    ("hhem", [-6.0], "contradicted"),
]


@pytest.mark.parametrize(("style", "logits", "expected"), NLI_CASES)
async def test_nli_scorer_loads_by_path_batches_and_reads_each_label_layout(
    resources: GuardResources, tmp_path: Path, style: str, logits: list[float], expected: str
) -> None:
    model = build_nli_model(tmp_path / style, style, fixed_logits=logits)
    guard = GroundingGuard(f"nli-{style}", GroundingConfig(scorer="nli", nli_model=str(model)), resources)
    await guard.start()
    answers = ["The harbour of Vela opened in 1893.", "It handles 4,000 ships a year."] * 4
    verdicts = await guard.judge(answers, guard.default_thresholds, JudgeContext(sources=[HARBOUR]))
    assert len(verdicts) == 8
    kinds = [e.kind for v in verdicts for e in v.evidence]
    assert kinds, "every answer is a claim with evidence"
    assert set(kinds) == {expected}
    assert all(0.0 <= (e.score or 0.0) <= 1.0 for v in verdicts for e in v.evidence)
    metrics = resources.runners.metrics
    assert metrics is not None
    sizes = metrics.batch_size.collect()[0].samples
    assert any(s.name.endswith("_count") and "nli:" in s.labels["runner"] and s.value >= 1 for s in sizes)


async def test_citation_database(resources: GuardResources, tmp_path: Path) -> None:
    embedder = load_embedder()
    passages = [
        Source("kb-1", "The Orla bridge was completed in 1931 and spans 410 metres."),
        Source("kb-2", "Glenmora is a village in the highlands with 800 residents."),
        Source("kb-3", "The Vela museum is closed on Mondays."),
    ]
    assert build_index(passages, embedder.embed, tmp_path / "db", batch_size=2) == 3
    index = CitationIndex.load(tmp_path / "db")
    (hits,) = index.search(embedder.embed(["When was the Orla bridge finished?"]), k=2)
    assert hits[0][0].id == "kb-1"
    guard = GroundingGuard("db", GroundingConfig(citation_db=str(tmp_path / "db")), resources)
    await guard.start()
    (verdict,) = await guard.judge(
        ["The Orla bridge spans 410 metres."], guard.default_thresholds, JudgeContext()
    )
    assert verdict.allowed
    assert verdict.evidence[0].source == "kb-1"  # the operator's database, with no request sources
    (wrong,) = await guard.judge(
        ["The Orla bridge spans 950 metres."], guard.default_thresholds, JudgeContext()
    )
    assert wrong.categories == ["unsupported", "contradicted"]


async def test_stream_windows_judge_only_their_new_sentences(grounding: GroundingGuard) -> None:
    context_part = "It handles 9,000 ships a year. "  # already judged in the previous window
    window = context_part + "The harbour of Vela opened in 1893."
    focused = JudgeContext(sources=[HARBOUR], focus_start=len(context_part))
    (verdict,) = await grounding.judge([window], grounding.default_thresholds, focused)
    assert verdict.allowed
    assert [e.kind for e in verdict.evidence] == ["supported"]
