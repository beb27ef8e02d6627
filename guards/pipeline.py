"""Running a stage's rules over a batch of texts, and deciding what happens to each text.

Rules of a stage run concurrently, each under its own time-out. Per text and rule the decision is one
of ``pass``, ``flag``, ``annotate``, ``redact``, ``truncate``, ``revise``, ``block`` or ``error``; per
text the most severe wins, and every redaction of every rule is applied in one pass over the original
text. ``revise`` is only a decision here: the gateway asks a critic, and when that fails it applies the
rule's fallback instead (``with_fallbacks``).

A guard judges a normalised view of each text (``guards.normalise``): the canonical one unless it
declares another as ``view`` (the toxicity guard reads the deobfuscated one). What it finds is mapped
back, so spans, evidence and redactions always refer to the text as sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

import msgspec

from guards.metrics import GuardMetrics
from guards.normalise import Normalised
from guards.policy import Action, FailMode, Rule
from guards.protocol import Guard
from guards.redaction import apply_spans, merge_overlapping
from guards.verdict import JudgeContext, Span, Stage, Verdict
from guards.verdict_cache import VerdictCache
from guards.views import focus_in_view, make_views, verdict_to_original, view_of

log = logging.getLogger("hhh.guards")

UNAVAILABLE = "guard_unavailable"


class RuleResult(msgspec.Struct):
    guard: str
    action: str
    decisions: list[str]  # per text
    verdicts: list[Verdict | None]  # per text; None when the guard failed
    error: str | None = None

    def redaction_spans(self, index: int) -> list[Span]:
        """What this rule redacts in text ``index``: its flagged spans, when it decided to redact."""
        verdict = self.verdicts[index]
        if self.decisions[index] != "redact" or verdict is None:
            return []
        return [s for s in verdict.spans if s.label in verdict.categories]


class TextOutcome(msgspec.Struct):
    text: str  # after redaction
    decision: str  # the most severe decision of any rule
    annotate: bool = False  # some rule asked for the disclaimer (whatever else happened)
    annotation: str | None = None  # the guards' own text for it, if any (else the policy's disclaimer)
    truncated_at: int | None = None  # where a truncation cut the text
    blocked_by: str | None = None
    block_categories: list[str] = []


class StageOutcome(msgspec.Struct):
    texts: list[TextOutcome]
    results: list[RuleResult]

    @property
    def blocked(self) -> TextOutcome | None:
        return next((t for t in self.texts if t.decision == "block"), None)

    def redaction_spans(self, index: int) -> list[Span]:
        return _redaction_spans(index, self.results)


def _truncation_point(index: int, results: Sequence[RuleResult]) -> int:
    starts = [
        span.start
        for result in results
        if result.decisions[index] == "truncate" and (verdict := result.verdicts[index]) is not None
        for span in verdict.spans
        if span.label in verdict.categories
    ]
    return min(starts, default=0)


def _redaction_spans(index: int, results: Sequence[RuleResult]) -> list[Span]:
    return [span for result in results for span in result.redaction_spans(index)]


def _truncated(
    text: str, index: int, results: Sequence[RuleResult], annotate: bool, annotation: str | None
) -> TextOutcome:
    """The text cut before the first offending span, with every redaction of the part kept applied
    (a redaction across the cut moves the cut before it)."""
    cut = _truncation_point(index, results)
    redactions = merge_overlapping(s for s in _redaction_spans(index, results) if s.replacement is not None)
    cut = min([cut] + [s.start for s in redactions if s.start < cut < s.end])
    kept = apply_spans(text[:cut], [s for s in redactions if s.end <= cut])
    return TextOutcome(kept, "truncate", annotate, annotation, cut)


# Revise replaces the whole answer, so it outranks a redaction or a cut; a block outranks it (nothing of
# a blocked answer is revised). ``feedback.events.ChoiceReport.merge`` is handed ``most_severe``.
_DECISION_ORDER = {
    "pass": 0,
    "error": 1,
    "flag": 2,
    "annotate": 3,
    "redact": 4,
    "truncate": 5,
    "revise": 6,
    "block": 7,
}


def most_severe(decisions: Sequence[str]) -> str:
    """The decision that wins.

    >>> most_severe(["pass", "redact", "flag"])
    'redact'
    >>> most_severe(["revise", "truncate"]), most_severe(["revise", "block"])
    ('revise', 'block')
    """
    return max(decisions, key=_DECISION_ORDER.__getitem__, default="pass")


def only_categories(verdict: Verdict, categories: Sequence[str] | None, text: str) -> Verdict:
    """``verdict`` as a rule that counts only ``categories`` sees it (None: all): the others' scores,
    spans and flags are gone, so they neither flag nor redact.

    >>> v = Verdict("pii", False, {"PERSON": 0.85, "EMAIL_ADDRESS": 1.0}, ["EMAIL_ADDRESS", "PERSON"],
    ...             [Span(0, 3, "PERSON", 0.85, "<PERSON>"), Span(4, 9, "EMAIL_ADDRESS", 1.0, "<E>")])
    >>> kept = only_categories(v, ["EMAIL_ADDRESS"], "Ann a@b.c")
    >>> kept.allowed, kept.categories, [span.label for span in kept.spans], list(kept.scores)
    (False, ['EMAIL_ADDRESS'], ['EMAIL_ADDRESS'], ['EMAIL_ADDRESS'])
    >>> only_categories(v, ["PHONE_NUMBER"], "Ann a@b.c").allowed
    True
    """
    if categories is None:
        return verdict
    counted = set(categories)
    spans = [span for span in verdict.spans if span.label in counted]
    flagged = [category for category in verdict.categories if category in counted]
    redactable = bool(spans) and all(span.replacement is not None for span in spans)
    return msgspec.structs.replace(
        verdict,
        # Allowed when every reason it was not is left out (a refusal without categories stays one).
        allowed=verdict.allowed or (bool(verdict.categories) and not flagged),
        scores={name: score for name, score in verdict.scores.items() if name in counted},
        categories=flagged,
        spans=spans,
        rewritten=apply_spans(text, spans) if redactable and verdict.rewritten is not None else None,
    )


def _decide(rule: Rule, verdict: Verdict) -> str:
    if verdict.allowed:
        return "pass"
    if rule.action is Action.REVISE:
        return "revise"
    flagged = [span for span in verdict.spans if span.label in verdict.categories]
    if rule.action is Action.REDACT:
        # Redaction needs something to replace; a guard that only scores (toxicity) blocks instead.
        can_rewrite = bool(flagged) and all(span.replacement is not None for span in flagged)
        return "redact" if can_rewrite else "block"
    if rule.action is Action.TRUNCATE:
        return "truncate" if flagged else "block"  # nothing to cut before: refuse
    return rule.action.value


def with_fallbacks(outcome: StageOutcome, rules: Sequence[Rule], texts: Sequence[str]) -> StageOutcome:
    """``outcome`` (of ``rules`` over ``texts``, as judged) with each ``revise`` decision replaced by what
    its rule's fallback action decides on the same verdict: the answer as if it had never been revised.
    Nothing is judged again."""
    results = [_fallen_back(rule, result) for rule, result in zip(rules, outcome.results, strict=True)]
    combined = [GuardEngine.combine(index, text, rules, results) for index, text in enumerate(texts)]
    return StageOutcome(combined, results)


def _fallen_back(rule: Rule, result: RuleResult) -> RuleResult:
    if "revise" not in result.decisions:
        return result
    instead = msgspec.structs.replace(rule, action=rule.revising.fallback)
    decisions = [
        _decide(instead, verdict) if decision == "revise" and verdict is not None else decision
        for decision, verdict in zip(result.decisions, result.verdicts, strict=True)
    ]
    return msgspec.structs.replace(result, decisions=decisions)


def _all_judged(verdicts: list[Verdict | None]) -> list[Verdict]:
    """Every text has its verdict by now (cached or judged)."""
    judged = [verdict for verdict in verdicts if verdict is not None]
    assert len(judged) == len(verdicts)
    return judged


def _for_rule(context: JudgeContext, rule: Rule) -> JudgeContext:
    """The context as one rule's guard sees it: with the categories the rule counts, and patience for
    company that leaves at least half of the rule's time-out to the check itself."""
    patience_s = min(context.patience_s, rule.timeout_ms / 2000)
    if rule.categories is None and patience_s == context.patience_s:
        return context
    categories = context.categories if rule.categories is None else rule.categories
    return msgspec.structs.replace(context, categories=categories, patience_s=patience_s)


class GuardEngine:
    def __init__(
        self,
        guards: Mapping[str, Guard],
        metrics: GuardMetrics | None = None,
        cache: VerdictCache | None = None,
    ) -> None:
        self.guards = dict(guards)
        self._metrics = metrics
        self.cache = cache  # input verdicts per tenant (None: every text judged every time)
        self.in_flight = 0  # judgements under way (``run`` calls), a measure of the guards' load

    async def start(self) -> None:
        for guard in self.guards.values():
            started = time.perf_counter()
            await guard.start()
            log.info("guard %s ready in %.1f s", guard.name, time.perf_counter() - started)

    async def close(self) -> None:
        for guard in self.guards.values():
            await guard.close()

    async def run(
        self, stage: Stage, rules: Sequence[Rule], texts: Sequence[str], context: JudgeContext | None = None
    ) -> StageOutcome:
        if not rules or not texts:
            return StageOutcome([TextOutcome(text, "pass") for text in texts], [])
        context = msgspec.structs.replace(context or JudgeContext(), stage=stage)
        wanted = [view_of(self.guards[rule.guard]) for rule in rules]
        self.in_flight += 1
        try:
            seen = await make_views(texts, set(wanted))
            results = await asyncio.gather(
                *(
                    self._run_rule(stage, rule, texts, [v[view] for v in seen], context)
                    for rule, view in zip(rules, wanted, strict=True)
                )
            )
        finally:
            self.in_flight -= 1
        outcomes = [self.combine(index, text, rules, results) for index, text in enumerate(texts)]
        return StageOutcome(outcomes, list(results))

    async def _run_rule(
        self,
        stage: Stage,
        rule: Rule,
        texts: Sequence[str],
        seen: Sequence[Normalised],
        context: JudgeContext,
    ) -> RuleResult:
        guard = self.guards[rule.guard]
        thresholds = {**guard.default_thresholds, **rule.thresholds}
        started = time.perf_counter()
        keys, verdicts = self._cached(stage, rule, guard, thresholds, seen, context)
        missing = [index for index, verdict in enumerate(verdicts) if verdict is None]
        try:
            if missing:
                asked = [seen[index] for index in missing]
                asked_context = _for_rule(focus_in_view(context, asked), rule)
                judged = await asyncio.wait_for(
                    guard.judge([v.text for v in asked], thresholds, asked_context), rule.timeout_ms / 1000
                )
                for index, verdict in zip(missing, judged, strict=True):
                    verdicts[index] = verdict
                    key = keys[index]
                    if key is not None and self.cache is not None:
                        self.cache.put(key, verdict)
        except Exception as exc:  # noqa: BLE001 - a failing guard gets the rule's fail mode, never a 500
            kind = "timeout" if isinstance(exc, TimeoutError) else "error"
            message = f"{kind}: {exc}" if str(exc) else kind
            log.warning("guard %s failed on %s (%s); failing %s", rule.guard, stage, message, rule.on_error)
            if self._metrics is not None:
                self._metrics.errors.labels(rule.guard, stage, kind, rule.on_error).inc()
            decision = "block" if rule.on_error is FailMode.CLOSED else "error"
            self._count(rule.guard, stage, [decision] * len(texts), [None] * len(texts))
            return RuleResult(rule.guard, rule.action, [decision] * len(texts), [None] * len(texts), message)
        if self._metrics is not None and missing:
            self._metrics.guard_latency.labels(rule.guard, stage).observe(time.perf_counter() - started)
        checked = [
            only_categories(verdict_to_original(verdict, text, view), rule.categories, text)
            for verdict, text, view in zip(_all_judged(verdicts), texts, seen, strict=True)
        ]
        decisions = [_decide(rule, verdict) for verdict in checked]
        self._count(rule.guard, stage, decisions, list(checked))
        return RuleResult(rule.guard, rule.action, decisions, list(checked))

    def _cached(
        self,
        stage: Stage,
        rule: Rule,
        guard: Guard,
        thresholds: Mapping[str, float],
        seen: Sequence[Normalised],
        context: JudgeContext,
    ) -> tuple[list[bytes | None], list[Verdict | None]]:
        """Each text's cache key (None: not cached) and its cached verdict, if any (input verdicts of
        context-free guards, per tenant: see ``guards.verdict_cache``)."""
        cache = self.cache
        if cache is None or stage is not Stage.INPUT or not getattr(guard, "context_free", False):
            return [None] * len(seen), [None] * len(seen)
        keys = [cache.key(context.tenant, rule.guard, thresholds, rule.categories, v.text) for v in seen]
        verdicts: list[Verdict | None] = []
        for key in keys:
            verdict = cache.get(key) if key is not None else None
            # A copy: the cached one stays as judged; its latency is this call's (none).
            verdicts.append(None if verdict is None else msgspec.structs.replace(verdict, latency_ms=0.0))
        if self._metrics is not None:
            hits = sum(v is not None for v in verdicts)
            misses = sum(k is not None for k in keys) - hits
            if hits:
                self._metrics.verdict_cache.labels(rule.guard, "hit").inc(hits)
            if misses:
                self._metrics.verdict_cache.labels(rule.guard, "miss").inc(misses)
        return keys, verdicts

    def _count(self, guard: str, stage: Stage, decisions: list[str], verdicts: list[Verdict | None]) -> None:
        if self._metrics is None:
            return
        for decision, verdict in zip(decisions, verdicts, strict=True):
            self._metrics.decisions.labels(guard, stage, decision).inc()
            if decision == "block":
                for category in (verdict.categories if verdict else None) or [UNAVAILABLE]:
                    self._metrics.blocks.labels(guard, stage, category).inc()

    @staticmethod
    def combine(index: int, text: str, rules: Sequence[Rule], results: Sequence[RuleResult]) -> TextOutcome:
        decision = "pass"
        blocked_by: str | None = None
        categories: list[str] = []
        for rule, result in zip(rules, results, strict=True):
            current = result.decisions[index]
            verdict = result.verdicts[index]
            if _DECISION_ORDER[current] > _DECISION_ORDER[decision]:
                decision = current
                if current == "block":
                    blocked_by = rule.guard
                    categories = list(verdict.categories) if verdict else [UNAVAILABLE]
        annotate = any(result.decisions[index] == "annotate" for result in results)
        notes = [
            verdict.annotation
            for result in results
            if result.decisions[index] == "annotate"
            and (verdict := result.verdicts[index])
            and verdict.annotation
        ]
        annotation = "".join(notes) or None
        if decision == "block":
            return TextOutcome(text, decision, annotate, annotation, None, blocked_by, categories)
        if decision == "truncate":
            return _truncated(text, index, results, annotate, annotation)
        spans = _redaction_spans(index, results)
        return TextOutcome(apply_spans(text, spans) if spans else text, decision, annotate, annotation)
