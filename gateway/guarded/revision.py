"""The ``revise`` action on whole answers (Constitutional AI at serving time).

When a ``revise`` rule fires on a choice and nothing blocks it, a critic model (any routed model; the
request's own by default) is asked, through the proxy, to critique the answer against the principles of
the rule's constitution that match the guards' findings, then to revise it. The revision and the critique
are judged by every output rule again. A revision that still draws a ``revise`` decision gets another
round while rounds are left; one that passes is what the client gets (content only: a revision replaces
``message.content``, or ``text``); anything else (a block, no round left, the critic failing, timing out
or answering nothing usable, a choice whose other fields drew the ``revise``) applies each fired rule's
fallback to the answer as the upstream gave it, and the report says why.

Everything here works on the text as the upstream saw and wrote it: input placeholders, never the values
behind them, and with the output guards' redactions applied before the critic reads it. A successful
revision is recorded as a ``RevisionEvent`` (AI feedback: rejected = the original, chosen = the revision).

Streams (``gateway.guarded.stream_revision``) run the same rounds on the answer so far, with the text the
client already has ``shown``: kept as it is, the critic rewrites only the rest.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from feedback.constitution import (
    Constitution,
    Finding,
    Principle,
    critique_messages,
    load_constitution,
    revision_messages,
    revision_text,
)
from feedback.events import ChoiceReport, RevisionEvent, RevisionReport, RoundReport, StageReport
from feedback.messages import message_text
from feedback.recorder import EventRecorder
from gateway.context import RequestContext
from gateway.guarded.critic import Critic, CriticFailed
from gateway.guarded.guardrails import ChoiceJudgement, Guardrails, Judged
from gateway.guarded.request import GuardedRequest
from gateway.guarded.text_slots import drop_logprobs
from gateway.relay.proxy import Proxy
from guards.pipeline import StageOutcome, most_severe
from guards.policy import Action, PolicyBook, PolicyError, Revision, Rule
from guards.verdict import JudgeContext, Source

_CONTENT = frozenset({"message.content", "text"})  # the one slot a revision replaces
_REPORTABLE = frozenset({"pass", "flag", "annotate", "redact"})  # a critique judged so goes in the report

Refuse = Callable[[dict[str, Any], str], None]
NOT_REVISED = "no critic is configured here: the rule's fallback applied"


def load_constitutions(book: PolicyBook) -> dict[str | None, Constitution]:
    """Every constitution a ``revise`` rule names (None: the built-in one), loaded once at start-up;
    a file that is missing or wrong is a configuration error naming the rule's key."""
    loaded: dict[str | None, Constitution] = {}
    for where, policy in book.named_policies():
        for index, rule in enumerate(policy.output):
            if rule.action is not Action.REVISE or rule.revising.constitution in loaded:
                continue
            path = rule.revising.constitution
            try:
                loaded[path] = load_constitution(None if path is None else Path(path).expanduser())
            except (OSError, ValueError) as exc:
                raise PolicyError(f"{where}.output[{index}].revision.constitution: {exc}") from None
    return loaded


class Revised(msgspec.Struct):
    """A revision that passed: its text as judged, and its judgement."""

    text: str
    judged: Judged


class RevisionJob:
    """One answer's revision: what the critic may rewrite, what the guards found, what the rounds did.

    ``shown`` is text the client already has (a stream's released prefix): kept as it is, the critic
    rewrites only ``original``, the rest, as its continuation.
    """

    def __init__(
        self,
        request: GuardedRequest,
        rule: Rule,
        context: JudgeContext,
        original: str,
        report: StageReport,
        where: str,
        shown: str = "",
    ) -> None:
        self.request = request
        self.settings: Revision = rule.revising
        self.context = context
        self.original = original  # output redactions applied
        self.report = report
        self.where = where
        self.shown = shown
        self.partial = False  # the answer was cut where its stream stopped: ``rejected`` is its start
        self.rounds: list[RoundReport] = []
        self.critiques: list[str] = []
        self.principles: list[str] = []
        self.latency_ms = 0.0

    @property
    def rejected(self) -> str:
        """The answer the revision replaces, as the critic was shown it."""
        return self.shown + self.original

    def whole(self, rest: str) -> str:
        """The answer with ``rest`` in place of what followed ``shown``."""
        return join_shown(self.shown, self.original, rest)

    def rest(self, whole: str) -> str:
        """What follows ``shown`` in a whole answer made by ``whole``."""
        return whole[len(self.shown) :].lstrip() if whole.startswith(self.shown) else whole

    def report_of(self, fallback: str | None = None, reason: str | None = None) -> RevisionReport:
        report = RevisionReport(rounds=self.rounds, latency_ms=self.latency_ms)
        if fallback is not None:
            report.fallback = fallback
        if reason is not None:
            report.reason = reason
        if self.shown:
            report.shown_chars = len(self.shown)
        return report


def join_shown(shown: str, original: str, rest: str) -> str:
    """``shown`` followed by ``rest``, a critic's continuation of it (stripped), spaced as the upstream
    spaced ``original``; a critic that repeats ``shown`` anyway has it taken off.

    >>> join_shown("", "you fool.", "Be kind.")
    'Be kind.'
    >>> join_shown("Hi there.", " you fool.", "Be kind.")
    'Hi there. Be kind.'
    >>> join_shown("Hi there. ", "you fool.", "Hi there. Be kind.")
    'Hi there. Be kind.'
    """
    if not shown:
        return rest
    if rest.startswith(shown.strip()):
        rest = rest[len(shown.strip()) :].lstrip()
    gap = original[: len(original) - len(original.lstrip())]
    if not gap and not shown[-1].isspace():
        gap = " "
    return shown + gap + rest


def revise_rule(resolved_rules: Sequence[Rule], report: StageReport) -> Rule | None:
    """The first ``revise`` rule (policy order) that fired: its settings apply."""
    fired = {g.guard for g in report.guards if g.decision == "revise"}
    return next((r for r in resolved_rules if r.action is Action.REVISE and r.guard in fired), None)


def not_revisable(judgement: ChoiceJudgement) -> str | None:
    """Why a choice cannot be revised (a revision replaces its content alone), or None."""
    texts = judgement.judged.outcome.texts
    for slot, text in zip(judgement.slots, texts, strict=True):
        if slot.where not in _CONTENT and text.decision == "revise":
            return f"revise applies to an answer's text content only, and {slot.where} failed"
    if not any(slot.where in _CONTENT for slot in judgement.slots):
        return "revise applies to an answer's text content, and this choice has none"
    return None


def findings(report: StageReport) -> list[Finding]:
    """What the ``revise`` rules found, as the critic's evidence: categories, scores, claims."""
    return [
        Finding(
            guard=g.guard,
            categories=list(g.categories),
            scores=dict(g.scores),
            evidence=[
                f'{c.kind}: "{c.detail}"' + (f" (source: {c.source})" if c.source else "")
                for c in g.claims or ()
            ],
        )
        for g in report.guards
        if g.decision == "revise"
    ]


def decisions(report: StageReport) -> dict[str, str]:
    """Guard → its most severe decision in ``report``."""
    found: dict[str, list[str]] = {}
    for guard in report.guards:
        found.setdefault(guard.guard, []).append(guard.decision)
    return {guard: most_severe(each) for guard, each in found.items()}


def prompt_text(body: dict[str, Any]) -> str:
    """The request as the critic is shown it: each message's role and text, or the prompt."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return "\n".join(
            f"{m.get('role', 'user')}: {message_text(m)}" for m in messages if isinstance(m, dict)
        )
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else "\n".join(p for p in prompt or () if isinstance(p, str))


def sources_text(sources: Sequence[Source]) -> str:
    """The request's own sources, for a critic asked to keep an answer to them."""
    if not sources:
        return ""
    listed = "\n".join(f"[{s.id}] {s.title + ': ' if s.title else ''}{s.text}" for s in sources)
    return f"\n\nSources:\n{listed}"


class Reviser:
    """Revises the choices of whole answers on which a ``revise`` rule fired; applies the others."""

    def __init__(
        self,
        proxy: Proxy,
        guardrails: Guardrails,
        constitutions: Mapping[str | None, Constitution],
        recorder: EventRecorder | None = None,
    ) -> None:
        self.proxy = proxy
        self.guardrails = guardrails
        self.constitutions = dict(constitutions)
        self.recorder = recorder

    async def settle(
        self,
        context: RequestContext,
        request: GuardedRequest,
        judgements: Sequence[ChoiceJudgement],
        judge_context: JudgeContext,
        event_id: str,
        refuse: Refuse,
    ) -> list[ChoiceReport]:
        """Each choice's decision applied in place (revisions asked concurrently); their reports."""
        return list(
            await asyncio.gather(
                *(self._settle(context, request, j, judge_context, event_id, refuse) for j in judgements)
            )
        )

    async def _settle(
        self,
        context: RequestContext,
        request: GuardedRequest,
        judgement: ChoiceJudgement,
        judge_context: JudgeContext,
        event_id: str,
        refuse: Refuse,
    ) -> ChoiceReport:
        report = judgement.judged.report
        rule = revise_rule(request.policy.policy.output, report) if judgement.revise else None
        if rule is None:
            self.guardrails.apply_choice(request.policy, judgement, refuse)
            return judgement.report
        why_not = not_revisable(judgement)
        if why_not is not None:
            return self.guardrails.fallback(request.policy, judgement, why_not, refuse)
        content = next(i for i, slot in enumerate(judgement.slots) if slot.where in _CONTENT)
        original = judgement.judged.outcome.texts[content].text
        where = judgement.slots[content].where
        job = RevisionJob(request, rule, judge_context, original, report, where)
        revised = await self.revise(context, job, event_id)
        if isinstance(revised, Revised):
            return self._apply(job, judgement, content, revised, refuse)
        fallen = self.guardrails.fallback(request.policy, judgement, revised, refuse)
        assert isinstance(fallen.revision, RevisionReport)  # fallback always says why
        fallen.revision.rounds = job.rounds
        fallen.revision.latency_ms = job.latency_ms
        return fallen

    async def revise(self, context: RequestContext, job: RevisionJob, event_id: str) -> Revised | str:
        """Run a job's rounds within its time budget: the revision that passed (recorded as AI feedback),
        or why none did. ``job`` keeps the rounds and the time taken, for the report."""
        model = job.settings.critic_model or job.request.model
        critic = Critic(self.proxy, context, model, job.settings.max_tokens)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(job.settings.timeout_ms / 1000):
                revised = await self._rounds(job, critic)
        except TimeoutError:
            return f"the revision ran out of its time budget ({job.settings.timeout_ms} ms)"
        except CriticFailed as exc:
            return exc.reason
        finally:
            job.latency_ms = _ms(started)
        if isinstance(revised, Revised):
            self._record(job, critic.model, revised, event_id)
        return revised

    def _constitution(self, path: str | None) -> Constitution:
        """Loaded at start-up (``load_constitutions``); one missing (an app built another way) is loaded
        once now."""
        if path not in self.constitutions:
            self.constitutions[path] = load_constitution(None if path is None else Path(path).expanduser())
        return self.constitutions[path]

    async def _rounds(self, job: RevisionJob, critic: Critic) -> Revised | str:
        """Critique, revise and re-check, round after round: the revision that passed, or why none did."""
        constitution = self._constitution(job.settings.constitution)
        answer, report = job.original, job.report
        prompt = prompt_text(job.request.body) + sources_text(job.request.sources)
        for number in range(1, job.settings.max_rounds + 1):
            found = findings(report)
            principles = constitution.matching(found)
            if not principles:
                guards = ", ".join(f.guard for f in found)
                return f"no principle of the constitution applies to what {guards} found"
            judged = await self._round(job, critic, number, prompt, answer, report, found, principles)
            decision = judged.report.decision
            if decision != "revise" and decision != "block":
                return Revised(judged.outcome.texts[0].text, judged)
            if decision == "block":
                return f"the revision of round {number} was blocked by the output guards"
            answer, report = job.rest(judged.outcome.texts[0].text), judged.report
        return f"the revision still failed the output guards after {job.settings.max_rounds} round(s)"

    async def _round(
        self,
        job: RevisionJob,
        critic: Critic,
        number: int,
        prompt: str,
        answer: str,
        report: StageReport,
        found: list[Finding],
        principles: list[Principle],
    ) -> Judged:
        started = time.perf_counter()
        entry = RoundReport(
            round=number,
            critic_model=critic.model,
            principles=[p.id for p in principles],
            before=decisions(report),
            latency_ms=0.0,
        )
        job.rounds.append(entry)
        job.principles += [p.id for p in principles if p.id not in job.principles]
        try:
            critique = await critic.ask(critique_messages(prompt, job.shown + answer, principles, found))
            job.critiques.append(critique)
            asked = revision_messages(prompt, answer, critique, principles, job.shown)
            revision = revision_text(await critic.ask(asked))
            if not revision:
                raise CriticFailed(f"the critic {critic.model!r} gave an empty revision")
            judged, critique_judged = await self.guardrails.judge_revision(
                job.request.policy, job.whole(revision), critique, job.where, job.context
            )
        finally:
            entry.latency_ms = _ms(started)
        # A critique may quote what it criticises: it was judged like an answer.
        critique_as_judged = critique_judged.outcome.texts[0]
        if critique_as_judged.decision in _REPORTABLE:
            entry.critique = critique_as_judged.text
        entry.after = decisions(judged.report)
        return judged

    def _apply(
        self, job: RevisionJob, judgement: ChoiceJudgement, content: int, revised: Revised, refuse: Refuse
    ) -> ChoiceReport:
        """The revision in the choice's content, with what the re-check decided applied to it (a
        redaction, a disclaimer, a cut); the other fields as first judged. Logprobs spell the original."""
        judgement.slots[content].write(revised.text)
        texts = list(judgement.judged.outcome.texts)
        texts[content] = revised.judged.outcome.texts[0]
        applied = ChoiceJudgement(
            judgement.choice, judgement.slots, Judged(StageOutcome(texts, []), revised.judged.report)
        )
        self.guardrails.apply_choice(job.request.policy, applied, refuse)
        drop_logprobs(judgement.choice)
        report = judgement.report
        report.revised = True
        report.revision = job.report_of()
        return report

    def _record(self, job: RevisionJob, critic_model: str, revised: Revised, event_id: str) -> None:
        if self.recorder is None:
            return
        request = job.request
        self.recorder.record(
            RevisionEvent(
                id=uuid.uuid4().hex,
                created=time.time(),
                tenant=request.tenant,
                origin="gateway",
                request_id=event_id,
                model=request.model,
                critic_model=critic_model,
                request=request.body,
                rejected=job.rejected,
                chosen=revised.text,
                principles=list(job.principles),
                rounds=len(job.rounds),
                critiques=list(job.critiques),
                partial=job.partial,
            )
        )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
