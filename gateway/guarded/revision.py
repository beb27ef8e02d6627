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

Exceptions: ``CriticFailed`` (the critic gave nothing usable, or its upstream failed), caught here.
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
from gateway.errors import GatewayError
from gateway.guarded.guardrails import ChoiceJudgement, Guardrails, Judged
from gateway.guarded.request import GuardedRequest
from gateway.guarded.text_slots import drop_logprobs
from gateway.relay.proxy import ForwardCall, Proxy
from guards.pipeline import StageOutcome, most_severe
from guards.policy import Action, PolicyBook, PolicyError, Revision, Rule
from guards.verdict import JudgeContext, Source

CRITIC_PATH = "/chat/completions"  # a critic is a chat model, whatever endpoint the answer came from
_CONTENT = frozenset({"message.content", "text"})  # the one slot a revision replaces
_SHOWN = frozenset({"pass", "flag", "annotate", "redact"})  # a critique judged so goes in the report

Refuse = Callable[[dict[str, Any], str], None]


class CriticFailed(Exception):
    """The critic could not give a usable critique or revision; ``reason`` is for the report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


class Critic:
    """One critic model, asked through the proxy: a non-streamed chat completion per call."""

    def __init__(self, proxy: Proxy, context: RequestContext, model: str, max_tokens: int) -> None:
        self.proxy = proxy
        self.context = context
        self.model = model
        self.max_tokens = max_tokens

    async def ask(self, messages: list[dict[str, Any]]) -> str:
        body = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens, "stream": False}
        call = ForwardCall(path=CRITIC_PATH, model=self.model, body=msgspec.json.encode(body))
        own = RequestContext(self.context.request_id)  # the request's context keeps its own model
        try:
            answer = await self.proxy.complete(own, call)
        except GatewayError as exc:
            raise CriticFailed(f"the critic {self.model!r} failed: {exc.message}") from None
        finally:  # the critic's time and tokens are the request's cost
            self.context.upstream_seconds += own.upstream_seconds
            self.context.usage_tokens += own.usage_tokens
        text = _reply_text(msgspec.json.decode(answer.content))
        if not text:
            raise CriticFailed(f"the critic {self.model!r} gave no usable answer")
        return text


def _reply_text(body: Any) -> str:
    choices = body.get("choices") if isinstance(body, dict) else None
    message = (choices[0].get("message") if choices and isinstance(choices[0], dict) else None) or {}
    content = message.get("content") if isinstance(message, dict) else None
    return content.strip() if isinstance(content, str) else ""


class Revised(msgspec.Struct):
    """A revision that passed: its text as judged, and its judgement."""

    text: str
    judged: Judged


class RevisionJob:
    """One choice's revision: the request, the choice as judged, and what the rounds found."""

    def __init__(
        self, request: GuardedRequest, judgement: ChoiceJudgement, rule: Rule, context: JudgeContext
    ) -> None:
        self.request = request
        self.judgement = judgement
        self.settings: Revision = rule.revising
        self.context = context
        self.content = next(i for i, slot in enumerate(judgement.slots) if slot.where in _CONTENT)
        self.original = judgement.judged.outcome.texts[self.content].text  # output redactions applied
        self.rounds: list[RoundReport] = []
        self.critiques: list[str] = []
        self.principles: list[str] = []

    @property
    def where(self) -> str:
        return self.judgement.slots[self.content].where


def revise_rule(resolved_rules: Sequence[Rule], judgement: ChoiceJudgement) -> Rule | None:
    """The first ``revise`` rule (policy order) that fired on the choice: its settings apply."""
    fired = {g.guard for g in judgement.judged.report.guards if g.decision == "revise"}
    return next((r for r in resolved_rules if r.action is Action.REVISE and r.guard in fired), None)


def not_revisable(judgement: ChoiceJudgement) -> str | None:
    """Why a choice cannot be revised (a revision replaces its content alone), or None."""
    texts = judgement.judged.outcome.texts
    if not any(slot.where in _CONTENT for slot in judgement.slots):
        return "revise applies to an answer's text content, and this choice has none"
    for slot, text in zip(judgement.slots, texts, strict=True):
        if slot.where not in _CONTENT and text.decision == "revise":
            return f"revise applies to an answer's text content only, and {slot.where} failed"
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
        rule = revise_rule(request.policy.policy.output, judgement) if judgement.revise else None
        if rule is None:
            self.guardrails.apply_choice(request.policy, judgement, refuse)
            return judgement.report
        why_not = not_revisable(judgement)
        if why_not is not None:
            return self.guardrails.fallback(request.policy, judgement, why_not, refuse)
        job = RevisionJob(request, judgement, rule, judge_context)
        critic = Critic(
            self.proxy, context, rule.revising.critic_model or request.model, job.settings.max_tokens
        )
        started = time.perf_counter()
        reason: str
        try:
            async with asyncio.timeout(job.settings.timeout_ms / 1000):
                revised = await self._rounds(job, critic)
        except TimeoutError:
            reason = f"the revision ran out of its time budget ({job.settings.timeout_ms} ms)"
        except CriticFailed as exc:
            reason = exc.reason
        else:
            if isinstance(revised, Revised):
                self._record(request, job, critic.model, revised, event_id)
                return self._apply(job, revised, refuse, _ms(started))
            reason = revised
        report = self.guardrails.fallback(request.policy, judgement, reason, refuse)
        assert isinstance(report.revision, RevisionReport)  # fallback always says why
        report.revision.rounds = job.rounds
        report.revision.latency_ms = _ms(started)
        return report

    def _constitution(self, path: str | None) -> Constitution:
        """Loaded at start-up (``load_constitutions``); one missing (an app built another way) is loaded
        once now."""
        if path not in self.constitutions:
            self.constitutions[path] = load_constitution(None if path is None else Path(path).expanduser())
        return self.constitutions[path]

    async def _rounds(self, job: RevisionJob, critic: Critic) -> Revised | str:
        """Critique, revise and re-check, round after round: the revision that passed, or why none did."""
        constitution = self._constitution(job.settings.constitution)
        answer, report = job.original, job.judgement.judged.report
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
            answer, report = judged.outcome.texts[0].text, judged.report
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
            critique = await critic.ask(critique_messages(prompt, answer, principles, found))
            job.critiques.append(critique)
            revision = revision_text(
                await critic.ask(revision_messages(prompt, answer, critique, principles))
            )
            if not revision:
                raise CriticFailed(f"the critic {critic.model!r} gave an empty revision")
            judged, critique_judged = await self.guardrails.judge_revision(
                job.request.policy, revision, critique, job.where, job.context
            )
        finally:
            entry.latency_ms = _ms(started)
        shown = critique_judged.outcome.texts[0]
        if shown.decision in _SHOWN:  # a critique may quote what it criticises: judged like an answer
            entry.critique = shown.text
        entry.after = decisions(judged.report)
        return judged

    def _apply(self, job: RevisionJob, revised: Revised, refuse: Refuse, latency_ms: float) -> ChoiceReport:
        """The revision in the choice's content, with what the re-check decided applied to it (a
        redaction, a disclaimer, a cut); the other fields as first judged. Logprobs spell the original."""
        judgement = job.judgement
        judgement.slots[job.content].write(revised.text)
        texts = list(judgement.judged.outcome.texts)
        texts[job.content] = revised.judged.outcome.texts[0]
        applied = ChoiceJudgement(
            judgement.choice, judgement.slots, Judged(StageOutcome(texts, []), revised.judged.report)
        )
        self.guardrails.apply_choice(job.request.policy, applied, refuse)
        drop_logprobs(judgement.choice)
        report = judgement.report
        report.revised = True
        report.revision = RevisionReport(rounds=job.rounds, latency_ms=latency_ms)
        return report

    def _record(
        self, request: GuardedRequest, job: RevisionJob, critic_model: str, revised: Revised, event_id: str
    ) -> None:
        if self.recorder is None:
            return
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
                rejected=job.original,
                chosen=revised.text,
                principles=list(job.principles),
                rounds=len(job.rounds),
                critiques=list(job.critiques),
            )
        )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
