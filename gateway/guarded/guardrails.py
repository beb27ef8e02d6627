"""Guards applied to OpenAI traffic: which policy holds, the input check, the check of whole answers,
and the ``guardrails`` report that every response carries (its schema lives in ``feedback.events``).
Nothing else reaches the guard engine or builds a report: streams and moderations ask ``Guardrails`` too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from msgspec import UNSET

from feedback.events import (
    BestOfNReport,
    ChoiceReport,
    ClaimReport,
    GuardrailsReport,
    GuardReport,
    RevisionReport,
    SpanReport,
    StageReport,
)
from gateway.errors import ContentFiltered, GuardUnavailable, InvalidRequest
from gateway.guarded.pseudonyms import Pseudonyms, pseudonymise
from gateway.guarded.sources import REQUEST_FIELD as SOURCES_FIELD
from gateway.guarded.text_slots import Slot, drop_logprobs
from guards.pipeline import (
    UNAVAILABLE,
    GuardEngine,
    RuleResult,
    StageOutcome,
    TextOutcome,
    most_severe,
    with_fallbacks,
)
from guards.policy import (
    Action,
    GuardSpec,
    Policy,
    PolicyBook,
    PolicyError,
    Rule,
    grades_only,
    parse_request_guardrails,
    tighten,
)
from guards.verdict import JudgeContext, Source, Stage

REQUEST_FIELD = "guardrails"


class ResolvedPolicy(msgspec.Struct):
    name: str
    policy: Policy
    tightened: bool = False  # by the request's own "guardrails" field


class CheckedInput(msgspec.Struct, frozen=True):
    """What the input guards made of a request's texts: the report (positions only), each text as the
    upstream may read it, and the values of its numbered placeholders (never recorded or sent)."""

    report: StageReport
    texts: list[str]
    pseudonyms: Pseudonyms


class Judged(msgspec.Struct, frozen=True):
    """What the guards made of some texts, and its report."""

    outcome: StageOutcome
    report: StageReport


class ChoiceJudgement(msgspec.Struct, frozen=True):
    """What the output guards made of one choice of a whole answer, before anything is applied."""

    choice: dict[str, Any]
    slots: list[Slot]
    judged: Judged

    @property
    def revise(self) -> bool:
        """A ``revise`` rule fired and nothing blocks: the answer goes to the critic."""
        return self.judged.report.decision == "revise"

    @property
    def report(self) -> ChoiceReport:
        report = self.judged.report
        return ChoiceReport(index=self.choice.get("index", 0), decision=report.decision, guards=report.guards)


def _stage_report(outcome: StageOutcome, wheres: Sequence[str]) -> StageReport:
    """Per guard: its decision, categories, highest scores and spans (positions only: a report must
    not repeat the personal data a redaction removed)."""
    guards = [_guard_report(result, wheres) for result in outcome.results]
    return StageReport(most_severe([t.decision for t in outcome.texts]), guards)


def _guard_report(result: RuleResult, wheres: Sequence[str]) -> GuardReport:
    scores: dict[str, float] = {}
    categories: set[str] = set()
    spans: list[SpanReport] = []
    claims: list[ClaimReport] = []
    latency = 0.0
    for where, verdict in zip(wheres, result.verdicts, strict=True):
        if verdict is None:
            continue
        latency = max(latency, verdict.latency_ms)
        categories.update(verdict.categories)
        for category, score in verdict.scores.items():
            scores[category] = round(max(score, scores.get(category, score)), 4)  # negative too (a reward)
        spans += [SpanReport(where, s.start, s.end, s.label, round(s.score, 4)) for s in verdict.spans]
        claims += [
            ClaimReport(where, e.kind, e.detail, e.source, e.start, e.end, e.score)
            for e in verdict.evidence
            if e.start is not None
        ]
    return GuardReport(
        guard=result.guard,
        action=result.action,
        decision=most_severe(result.decisions),
        categories=sorted(categories),
        scores=scores,
        spans=spans,
        claims=claims or UNSET,
        latency_ms=round(latency, 2),
        error=result.error,
    )


def summary_header(report: GuardrailsReport) -> str:
    """``input=redact(pii); output=pass``: the report in one header."""
    judged: list[tuple[str, Sequence[StageReport | ChoiceReport]]] = []
    if report.input is not UNSET:
        judged.append(("input", [report.input]))
    if report.output is not UNSET:  # judged even when it had no choices: then it passed
        judged.append(("output", report.output))
    parts = []
    for stage, sections in judged:
        decision = most_severe([s.decision for s in sections])
        deciders = sorted({g.guard for s in sections for g in s.guards if g.decision == decision}
                          | {"best_of_n" for s in sections if _best_of_n_decided(s, decision)})  # fmt: skip
        parts.append(
            f"{stage}={decision}" + (f"({','.join(deciders)})" if deciders and decision != "pass" else "")
        )
    return "; ".join(parts)


def _best_of_n_decided(section: StageReport | ChoiceReport, decision: str) -> bool:
    """Best-of-n's ``min_reward`` action made this choice's decision."""
    best = section.best_of_n if isinstance(section, ChoiceReport) else None
    return isinstance(best, BestOfNReport) and best.below_min_reward is True and best.action == decision


class Guardrails:
    """The one door to the guard engine: a request's policy, its guards applied, and their report."""

    def __init__(self, engine: GuardEngine, book: PolicyBook, specs: dict[str, GuardSpec]) -> None:
        self._engine = engine
        self.book = book
        self.specs = specs
        self._defaults = {name: dict(guard.default_thresholds) for name, guard in engine.guards.items()}
        # A request may name only loaded guards (those some policy runs), at the stages they serve.
        self._usable = {name: frozenset(guard.stages) for name, guard in engine.guards.items()}
        self._categories = {name: frozenset(guard.categories) for name, guard in engine.guards.items()}

    @property
    def busy(self) -> bool:
        """Whether any judgement is under way now: a new check would queue behind it."""
        return self._engine.in_flight > 0

    def resolve(self, tenant: str, model: str, asked: Any = None) -> ResolvedPolicy:
        """The tenant's policy for this model, tightened by ``asked``: the request's own ``guardrails``
        field (the gateway's, never the upstream's)."""
        name, policy = self.book.resolve(tenant, model)
        if asked is None:
            return ResolvedPolicy(name, policy)
        try:
            asks = parse_request_guardrails(asked)
            policy = tighten(policy, asks, self._usable, self._defaults, self._categories)
        except PolicyError as exc:
            param, _, message = str(exc).partition(": ")
            raise InvalidRequest(f"Invalid value for '{param}': {message}", param=param) from None
        return ResolvedPolicy(f"{name}+request", policy, tightened=True)

    async def check_input(
        self,
        resolved: ResolvedPolicy,
        slots: list[Slot],
        answered: bool = True,
        kinds: Sequence[str] = (),
        sources: Sequence[Source] = (),
        tenant: str = "",
    ) -> CheckedInput:
        """Judge every input text: the report, each text as the upstream may read it (redacted, with
        numbered placeholders where the rule restores and an answer will come to restore them in), and
        the placeholders' values. A block raises. Nothing is written back: the caller makes the redacted
        request.

        ``kinds``: each slot's kind of text (``text_slots.slot_kinds``), for guards that tell them apart.
        ``sources``: the items of the request's ``sources`` field, judged (read only: never sent upstream)
        by the rules whose guard ``reads_sources`` (prompt injection), reported as ``sources[i].text``.
        ``tenant``: who asked, the scope of cached input verdicts (``guards.verdict_cache``)."""
        texts, wheres = [slot.text for slot in slots], [slot.where for slot in slots]
        context = JudgeContext(kinds=list(kinds), tenant=tenant)
        judging = self._judge(Stage.INPUT, resolved.policy.input, texts, wheres, context)
        source_rules = [rule for rule in resolved.policy.input if self._reads_sources(rule.guard)]
        if sources and source_rules:  # judged beside the messages, refused by where they are
            source_wheres = [f"{SOURCES_FIELD}[{index}].text" for index in range(len(sources))]
            source_texts = [source.text for source in sources]
            source_context = JudgeContext(kinds=["source"] * len(sources), tenant=tenant)
            judged, read = await asyncio.gather(
                judging, self._judge(Stage.INPUT, source_rules, source_texts, source_wheres, source_context)
            )
            decision = most_severe([judged.report.decision, read.report.decision])
            outcomes = judged.outcome.texts + read.outcome.texts
            refusable = list(zip(wheres + source_wheres, outcomes, strict=True))
            judged = Judged(judged.outcome, StageReport(decision, judged.report.guards + read.report.guards))
        else:
            judged = await judging
            refusable = list(zip(wheres, judged.outcome.texts, strict=True))
        for where, text in refusable:
            if text.decision == "block":
                self._refuse_input(resolved, where, text, judged.report)
        if not answered:
            return CheckedInput(judged.report, [text.text for text in judged.outcome.texts], Pseudonyms())
        redacted, pseudonyms = pseudonymise(texts, judged.outcome, resolved.policy.input)
        return CheckedInput(judged.report, redacted, pseudonyms)

    async def judge_each_input(
        self, resolved: ResolvedPolicy, texts: Sequence[str], wheres: Sequence[str]
    ) -> list[Judged]:
        """Judge input texts in one batch, each judged and reported on its own (moderation); nothing is
        applied."""
        outcome = await self._engine.run(Stage.INPUT, resolved.policy.input, texts)
        return [_part(outcome, index, [where]) for index, where in enumerate(wheres)]

    async def judge_output(
        self,
        resolved: ResolvedPolicy,
        texts: Sequence[str],
        wheres: Sequence[str],
        context: JudgeContext | None = None,
        rules: Sequence[Rule] | None = None,
    ) -> Judged:
        """Judge some texts of an answer (a stream's window, its held tool calls, the whole answer for the
        grading rules) by ``rules`` (default: every output rule); nothing is applied. A ``revise`` decision
        stays: the caller revises, or falls back (``with_fallback``)."""
        chosen = resolved.policy.output if rules is None else rules
        return await self._judge(Stage.OUTPUT, chosen, texts, wheres, context)

    def grading(self, rule: Rule) -> bool:
        """Whether ``rule``'s guard only grades answers (a reward model): it judges whole answers, never a
        stream's windows (a window's grade is no answer's)."""
        return grades_only(self._categories.get(rule.guard, frozenset()))

    async def judge_revision(
        self, resolved: ResolvedPolicy, revision: str, critique: str, where: str, context: JudgeContext | None
    ) -> tuple[Judged, Judged]:
        """A critic's revision and its critique, judged by every output rule in one batch, each reported
        on its own; ``revise`` decisions stay (another round may follow)."""
        outcome = await self._engine.run(Stage.OUTPUT, resolved.policy.output, [revision, critique], context)
        return _part(outcome, 0, [where]), _part(outcome, 1, ["critique"])

    @staticmethod
    def with_fallback(
        resolved: ResolvedPolicy, judged: Judged, texts: Sequence[str], wheres: Sequence[str]
    ) -> Judged:
        """``judged`` with each ``revise`` decision replaced by its rule's fallback (on ``texts``)."""
        outcome = with_fallbacks(judged.outcome, resolved.policy.output, texts)
        return Judged(outcome, _stage_report(outcome, wheres))

    def fallback(
        self,
        resolved: ResolvedPolicy,
        judgement: ChoiceJudgement,
        reason: str,
        refuse: Callable[[dict[str, Any], str], None],
    ) -> ChoiceReport:
        """Apply the fallback of each ``revise`` rule that fired to the choice as the upstream gave it,
        and say why in its report (``revision`` is added by the caller when rounds were tried)."""
        texts, wheres = [slot.text for slot in judgement.slots], [slot.where for slot in judgement.slots]
        judged = self.with_fallback(resolved, judgement.judged, texts, wheres)
        fallen = ChoiceJudgement(judgement.choice, judgement.slots, judged)
        self.apply_choice(resolved, fallen, refuse)
        report = fallen.report
        report.revised = False
        report.revision = RevisionReport(
            rounds=[], fallback=fallback_actions(resolved, judgement.judged.report), reason=reason
        )
        return report

    @staticmethod
    def stream_choice_report(index: int, windows: Sequence[StageReport]) -> ChoiceReport:
        """A streamed choice's report, from the reports of its windows (and held tool calls)."""
        return ChoiceReport.merge(index, windows, most_severe)

    async def _judge(
        self,
        stage: Stage,
        rules: Sequence[Rule],
        texts: Sequence[str],
        wheres: Sequence[str],
        context: JudgeContext | None = None,
    ) -> Judged:
        outcome = await self._engine.run(stage, rules, texts, context)
        return Judged(outcome, _stage_report(outcome, wheres))

    def _reads_sources(self, guard: str) -> bool:
        return bool(getattr(self._engine.guards.get(guard), "reads_sources", False))

    @staticmethod
    def _refuse_input(resolved: ResolvedPolicy, where: str, text: TextOutcome, report: StageReport) -> None:
        if text.block_categories == [UNAVAILABLE]:
            raise GuardUnavailable(
                f"The {text.blocked_by} guard could not check the request, and policy '{resolved.name}' "
                "fails closed. Try again."
            )
        raise ContentFiltered(
            f"The request was blocked by the {text.blocked_by} guard "
            f"({', '.join(text.block_categories)}) in {where}.",
            param=where,
            guardrails=GuardrailsReport(policy=resolved.name, input=report),
        )

    async def judge_choices(
        self,
        resolved: ResolvedPolicy,
        choices: list[dict[str, Any]],
        slots_of: Callable[[dict[str, Any]], list[Slot]],
        context: JudgeContext | None = None,
    ) -> list[ChoiceJudgement]:
        """Judge every choice of a whole answer in one batch; nothing is applied yet."""
        per_choice = [slots_of(choice) for choice in choices]
        judged = [slot.text for group in per_choice for slot in group]
        outcome = await self._engine.run(Stage.OUTPUT, resolved.policy.output, judged, context)
        judgements = []
        offset = 0
        for choice, group in zip(choices, per_choice, strict=True):
            judgements.append(
                ChoiceJudgement(choice, group, _part(outcome, offset, [s.where for s in group]))
            )
            offset += len(group)
        return judgements

    async def check_choices(
        self,
        resolved: ResolvedPolicy,
        choices: list[dict[str, Any]],
        slots_of: Callable[[dict[str, Any]], list[Slot]],
        refuse: Callable[[dict[str, Any], str], None],
        context: JudgeContext | None = None,
        not_revised: str = "this answer is not revised",
    ) -> list[ChoiceReport]:
        """Judge every choice of a whole answer in one batch; apply each choice's decision in place. Nothing
        is revised here: a ``revise`` decision gets its rule's fallback, for the reason ``not_revised``."""
        reports = []
        for judgement in await self.judge_choices(resolved, choices, slots_of, context):
            if judgement.revise:
                reports.append(self.fallback(resolved, judgement, not_revised, refuse))
                continue
            self.apply_choice(resolved, judgement, refuse)
            reports.append(judgement.report)
        return reports

    def apply_choice(
        self,
        resolved: ResolvedPolicy,
        judgement: ChoiceJudgement,
        refuse: Callable[[dict[str, Any], str], None],
    ) -> None:
        """Apply what the guards decided on one choice, in place."""
        choice, slots, outcome = judgement.choice, judgement.slots, judgement.judged.outcome
        blocked = outcome.blocked
        if blocked is not None:
            refuse(choice, self.refusal(resolved, blocked))
            return
        texts = outcome.texts
        for slot, text in zip(slots, texts, strict=True):
            if text.text != slot.text:
                slot.write(text.text)
                drop_logprobs(choice)  # they would spell out what was redacted or cut
        if any(text.decision == "truncate" for text in texts):
            choice["finish_reason"] = "content_filter"  # cut short by a guard
        if any(text.annotate for text in texts) and slots:
            note = next((t.annotation for t in texts if t.annotation), None) or resolved.policy.disclaimer
            slots[0].write(slots[0].text + note)

    @staticmethod
    def refusal(resolved: ResolvedPolicy, blocked: TextOutcome) -> str:
        categories = ", ".join(blocked.block_categories)
        if blocked.block_categories == [UNAVAILABLE]:
            categories = "the guard was unavailable and the policy fails closed"
        return resolved.policy.refusal.format(guard=blocked.blocked_by, categories=categories)


def fallback_actions(resolved: ResolvedPolicy, report: StageReport) -> str:
    """The fallback actions of the ``revise`` rules that fired, e.g. ``block``."""
    fired = {g.guard for g in report.guards if g.decision == "revise"}
    actions = [rule.revising.fallback.value for rule in resolved.policy.output
               if rule.action is Action.REVISE and rule.guard in fired]  # fmt: skip
    return ",".join(dict.fromkeys(actions))


def _part(outcome: StageOutcome, offset: int, wheres: Sequence[str]) -> Judged:
    """What a batch's outcome says of ``len(wheres)`` of its texts from ``offset``, and its report."""
    length = len(wheres)
    texts = outcome.texts[offset : offset + length]
    part = StageOutcome(texts, [_slice_result(r, offset, length) for r in outcome.results])
    return Judged(part, _stage_report(part, wheres))


def _slice_result(result: RuleResult, offset: int, length: int) -> RuleResult:
    return msgspec.structs.replace(
        result,
        decisions=result.decisions[offset : offset + length],
        verdicts=result.verdicts[offset : offset + length],
    )
