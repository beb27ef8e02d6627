"""Gathering preference pairs from the feedback store: annotated ranking tasks (aggregated across
annotators as asked), users' own feedback and AI feedback (revisions), each only when selected
(``feedback.preferences.ai_feedback``); then the hygiene: guarded candidates kept or dropped,
identical and duplicate pairs dropped, and a train/test split by prompt."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from typing import Any

import msgspec

from feedback.events import FeedbackEvent
from feedback.preferences.aggregate import AGGREGATIONS, aggregate
from feedback.preferences.agreement import AgreementReport, agreement
from feedback.preferences.ai_feedback import (
    DEFAULT_SOURCES,
    AiHumanAgreement,
    Ranked,
    ai_human_agreement,
    canonical_sources,
    revision_sides,
)
from feedback.preferences.formats import FORMATS, messages_of
from feedback.preferences.pairs import Comparison
from feedback.preferences.quality import AnnotatorQuality, annotator_quality
from feedback.preferences.reward_agreement import RewardAgreement, reward_agreement
from feedback.preferences.user_feedback import feedback_comparisons
from feedback.ranking import AnnotationRecord, Candidate, RankingTask, ranking_task
from feedback.store import FeedbackStore


class ExportOptions(msgspec.Struct, kw_only=True, frozen=True):
    format: str = "trl"
    aggregation: str = "none"  # none (a row per annotator), majority, bradley-terry
    ties: bool = False  # tied candidates give a margin-0 pair
    margin: bool = False  # a margin column (TRL formats)
    blocked: str = "exclude"  # candidates a guard blocked: their text is the gateway's refusal
    redacted: str = "include"  # candidates a guard redacted: the text stays redacted
    test_fraction: float = 0.1
    split_seed: str = "hhh"
    sources: tuple[str, ...] = DEFAULT_SOURCES  # human, user-feedback, ai-feedback (or the old names)
    tenants: tuple[str, ...] = ()  # only these tenants' traffic; empty: everyone's
    min_annotators: int = 1  # rankings: only tasks ranked by at least this many annotators
    # Leave out every ranking of annotators whose accuracy on gold tasks is below this (None: keep all).
    # Annotators who ranked no gold task are kept.
    min_gold_accuracy: float | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"--format: one of {', '.join(FORMATS)}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"--aggregate: one of {', '.join(AGGREGATIONS)}")
        if self.blocked not in ("include", "exclude") or self.redacted not in ("include", "exclude"):
            raise ValueError("--blocked and --redacted: include or exclude")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError("--test-fraction: at least 0 and below 1")
        if self.min_gold_accuracy is not None and not 0.0 <= self.min_gold_accuracy <= 1.0:
            raise ValueError("--min-gold-accuracy: between 0 and 1")
        if self.min_annotators < 1:
            raise ValueError("--min-annotators: at least 1")
        if not self.selected:
            raise ValueError("--sources: at least one source")

    @property
    def selected(self) -> tuple[str, ...]:
        """The sources asked for, by their canonical names."""
        return canonical_sources(self.sources)


class PreferencePair(msgspec.Struct, kw_only=True):
    prompt_id: str
    task_key: str
    request_id: str
    request: dict[str, Any]
    chosen: Candidate
    rejected: Candidate
    comparison: Comparison
    policy: str | None = None
    project: int | None = None


class Gathered(msgspec.Struct, kw_only=True):
    pairs: list[PreferencePair]
    agreement: AgreementReport
    counts: dict[str, int]  # tasks, annotations, feedback, dropped_blocked, duplicates, ...
    projects: list[int]
    ai_agreement: AiHumanAgreement | None = None  # None: AI feedback and human rankings not both selected
    critics: dict[str, int] = {}  # AI feedback: revisions per critic model
    # Best-of-n: per reward model, how people's rankings agree with its rewards (human rankings selected)
    reward_agreement: dict[str, RewardAgreement] = {}
    # Human rankings: per annotator, gold accuracy and position bias; and who --min-gold-accuracy left out.
    quality: dict[str, AnnotatorQuality] = {}
    left_out: list[str] = []


def prompt_id(request: dict[str, Any]) -> str:
    """The same conversation gets the same id, wherever it came from: the split's unit."""
    canonical = json.dumps(messages_of(request), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def split_of(prompt: str, test_fraction: float, seed: str) -> str:
    """Deterministic: a prompt is in test or in train, never both, in every export with the same seed."""
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


async def gather(store: FeedbackStore, options: ExportOptions, advance: Any = None) -> Gathered:
    counts: Counter[str] = Counter()
    pairs: list[PreferencePair] = []
    ranked: list[Ranked] = []
    projects: set[int] = set()
    selected = options.selected
    quality: dict[str, AnnotatorQuality] = {}
    left_out: list[str] = []
    if "human" in selected:
        found = await _ranking_pairs(store, options, counts, ranked, projects, advance)
        pairs += found.pairs
        quality, left_out = found.quality, found.left_out
    if "user-feedback" in selected:
        for task, rated in await _rated_tasks(store, counts):
            if options.tenants and task.tenant not in options.tenants:
                continue
            for comparison in feedback_comparisons(task, rated):
                pairs += _pair(task, comparison, None)
    critics: Counter[str] = Counter()
    if "ai-feedback" in selected:
        pairs += await _revision_pairs(store, options, counts, critics)
    kept = _hygiene(pairs, options, counts)
    ai_agreement = None
    if {"human", "ai-feedback"} <= set(selected):
        ai = [
            (p.prompt_id, p.chosen.text, p.rejected.text) for p in kept if p.comparison.source == "revision"
        ]
        ai_agreement = ai_human_agreement(ai, ranked)
    return Gathered(
        pairs=kept, agreement=agreement([[(r.annotator, r.places) for r in rs] for _, _, rs in ranked]),
        counts=dict(counts), projects=sorted(projects), ai_agreement=ai_agreement, critics=dict(critics),
        reward_agreement=reward_agreement([(task, records) for _, task, records in ranked]),
        quality=quality, left_out=left_out,
    )  # fmt: skip


class _Human(msgspec.Struct):
    pairs: list[PreferencePair]
    quality: dict[str, AnnotatorQuality]
    left_out: list[str]


async def _ranking_pairs(
    store: FeedbackStore,
    options: ExportOptions,
    counts: Counter[str],
    ranked: list[Ranked],
    projects: set[int],
    advance: Any,
) -> _Human:
    """Pairs from people's rankings. Gold tasks give none: they score the annotators, and annotators
    below ``min_gold_accuracy`` are left out of every task."""
    annotated: list[tuple[RankingTask, list[AnnotationRecord]]] = []
    async for _, task, unordered in store.annotated_tasks(await store.annotated_task_keys()):
        if advance is not None:
            advance(1)
        records = sorted(unordered, key=lambda r: r.annotation_id)
        if task is None or not records:
            counts["tasks_missing"] += task is None
            continue
        if options.tenants and task.tenant not in options.tenants and task.gold is None:
            continue
        annotated.append((task, records))
    quality = annotator_quality(annotated)
    threshold = options.min_gold_accuracy
    left_out = sorted(
        name for name, q in quality.items()
        if threshold is not None and q.gold_accuracy is not None and q.gold_accuracy < threshold
    )  # fmt: skip
    pairs: list[PreferencePair] = []
    for task, all_records in annotated:
        if task.gold is not None:
            counts["gold_tasks"] += 1
            counts["gold_annotations"] += len(all_records)
            continue
        records = [r for r in all_records if r.annotator not in left_out]
        counts["annotations_left_out"] += len(all_records) - len(records)
        if not records:
            continue
        if len(records) < options.min_annotators:
            counts["tasks_too_few_annotators"] += 1
            continue
        counts["tasks"] += 1
        counts["annotations"] += len(records)
        projects.update(r.project for r in records if r.project is not None)
        ranked.append((prompt_id(task.request), task, records))
        rankings = [(r.annotator, r.places) for r in records]
        for comparison in aggregate(rankings, options.aggregation, options.ties):
            pairs += _pair(task, comparison, records[0].project)
    return _Human(pairs, quality, left_out)


async def _revision_pairs(
    store: FeedbackStore, options: ExportOptions, counts: Counter[str], critics: Counter[str]
) -> list[PreferencePair]:
    pairs = []
    for tenant in await store.revision_tenants():
        if options.tenants and tenant not in options.tenants:
            continue
        for revision in await store.revisions(tenant):
            counts["revisions"] += 1
            counts[f"revisions_{revision.origin}"] += 1
            critics[revision.critic_model] += 1
            chosen, rejected, comparison = revision_sides(revision)
            pairs.append(
                PreferencePair(
                    prompt_id=prompt_id(revision.request), task_key=revision.id,
                    request_id=revision.request_id, request=revision.request, chosen=chosen,
                    rejected=rejected, comparison=comparison,
                )
            )  # fmt: skip
    return pairs


async def _rated_tasks(
    store: FeedbackStore, counts: Counter[str]
) -> list[tuple[RankingTask, list[tuple[FeedbackEvent, str]]]]:
    by_request: dict[str, list[tuple[FeedbackEvent, str]]] = defaultdict(list)
    for feedback in await store.feedback_events():
        counts["feedback"] += 1
        found = await store.locate_completion(feedback.tenant, feedback.completion_id)
        if found is None:
            counts["feedback_unmatched"] += 1  # its completion was not recorded, or has expired
            continue
        request_id, event_id = found
        by_request[request_id].append((feedback, event_id))
    tasks = []
    for request_id, rated in sorted(by_request.items()):
        found_set = await store.candidate_set(request_id)
        task = ranking_task(found_set.original, found_set.candidates)
        if task is None:
            continue
        # Feedback only ever speaks for its sender's own completions (ids recorded before lookups were
        # per tenant could name another tenant's).
        own = [(feedback, event_id) for feedback, event_id in rated if feedback.tenant == task.tenant]
        counts["feedback_foreign"] += len(rated) - len(own)
        if own:
            tasks.append((task, own))
    return tasks


def _pair(task: RankingTask, comparison: Comparison, project: int | None) -> list[PreferencePair]:
    by_id = {c.id: c for c in task.candidates}
    chosen, rejected = by_id.get(comparison.chosen), by_id.get(comparison.rejected)
    if chosen is None or rejected is None:
        return []
    return [
        PreferencePair(
            prompt_id=prompt_id(task.request), task_key=task.task_key, request_id=task.request_id,
            request=task.request, chosen=chosen, rejected=rejected, comparison=comparison,
            policy=task.policy, project=project,
        )
    ]  # fmt: skip


def _hygiene(
    pairs: list[PreferencePair], options: ExportOptions, counts: Counter[str]
) -> list[PreferencePair]:
    kept = []
    seen: set[tuple[str, str, str, str | None]] = set()
    for pair in pairs:
        counts[f"pairs_{pair.comparison.source}"] += 1
        sides = (pair.chosen, pair.rejected)
        if options.blocked == "exclude" and any(c.blocked for c in sides):
            counts["dropped_blocked"] += 1
            continue
        if options.redacted == "exclude" and any(c.redacted for c in sides):
            counts["dropped_redacted"] += 1
            continue
        if pair.chosen.text == pair.rejected.text:
            counts["dropped_identical"] += 1  # two answers alike teach nothing
            continue
        key = (pair.prompt_id, pair.chosen.text, pair.rejected.text, pair.comparison.annotator)
        if key in seen:
            counts["dropped_duplicates"] += 1
            continue
        seen.add(key)
        kept.append(pair)
    return kept
