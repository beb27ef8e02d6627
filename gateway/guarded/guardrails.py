"""Guards applied to OpenAI traffic: which policy holds, the input check, the check of whole answers,
and the ``guardrails`` report that every response carries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from gateway.errors import ContentFiltered, GuardUnavailable, InvalidRequest
from gateway.guarded.text_slots import Slot
from guards.pipeline import UNAVAILABLE, GuardEngine, StageOutcome, TextOutcome, most_severe
from guards.policy import GuardSpec, Policy, PolicyBook, PolicyError, parse_request_guardrails, tighten
from guards.verdict import JudgeContext, Stage

REQUEST_FIELD = "guardrails"


class ResolvedPolicy(msgspec.Struct):
    name: str
    policy: Policy
    tightened: bool = False  # by the request's own "guardrails" field


def stage_report(outcome: StageOutcome, wheres: Sequence[str]) -> dict[str, Any]:
    """Per guard: its decision, categories, highest scores and spans (positions only: a report must
    not repeat the personal data a redaction removed)."""
    guards = []
    for result in outcome.results:
        scores: dict[str, float] = {}
        categories: set[str] = set()
        spans = []
        evidence: list[dict[str, Any]] = []
        latency = 0.0
        for where, verdict in zip(wheres, result.verdicts, strict=True):
            if verdict is None:
                continue
            latency = max(latency, verdict.latency_ms)
            categories.update(verdict.categories)
            for category, score in verdict.scores.items():
                scores[category] = round(max(score, scores.get(category, 0.0)), 4)
            spans += [
                {"where": where, "start": s.start, "end": s.end, "label": s.label, "score": round(s.score, 4)}
                for s in verdict.spans
            ]
            evidence += [
                {"where": where, **msgspec.to_builtins(e)} for e in verdict.evidence if e.start is not None
            ]
        guards.append(
            {
                "guard": result.guard,
                "action": result.action,
                "decision": most_severe(result.decisions),
                "categories": sorted(categories),
                "scores": scores,
                "spans": spans,
                **({"claims": evidence} if evidence else {}),
                "latency_ms": round(latency, 2),
                "error": result.error,
            }
        )
    return {"decision": most_severe([t.decision for t in outcome.texts]), "guards": guards}


def summary_header(report: dict[str, Any]) -> str:
    """``input=redact(pii); output=pass``: the report in one header."""
    parts = []
    for stage in ("input", "output"):
        section = report.get(stage)
        if section is None:
            continue
        sections = section if isinstance(section, list) else [section]
        decision = most_severe([s["decision"] for s in sections])
        deciders = sorted({g["guard"] for s in sections for g in s["guards"] if g["decision"] == decision})
        parts.append(
            f"{stage}={decision}" + (f"({','.join(deciders)})" if deciders and decision != "pass" else "")
        )
    return "; ".join(parts)


class Guardrails:
    def __init__(self, engine: GuardEngine, book: PolicyBook, specs: dict[str, GuardSpec]) -> None:
        self.engine = engine
        self.book = book
        self.specs = specs
        self._defaults = {name: dict(guard.default_thresholds) for name, guard in engine.guards.items()}
        # A request may name only loaded guards (those some policy runs), at the stages they serve.
        self._usable = {name: frozenset(guard.stages) for name, guard in engine.guards.items()}

    def resolve(self, tenant: str, model: str, asked: Any = None) -> ResolvedPolicy:
        """The tenant's policy for this model, tightened by ``asked``: the request's own ``guardrails``
        field (the gateway's, never the upstream's)."""
        name, policy = self.book.resolve(tenant, model)
        if asked is None:
            return ResolvedPolicy(name, policy)
        try:
            policy = tighten(policy, parse_request_guardrails(asked), self._usable, self._defaults)
        except PolicyError as exc:
            param, _, message = str(exc).partition(": ")
            raise InvalidRequest(f"Invalid value for '{param}': {message}", param=param) from None
        return ResolvedPolicy(f"{name}+request", policy, tightened=True)

    async def check_input(
        self, resolved: ResolvedPolicy, slots: list[Slot]
    ) -> tuple[dict[str, Any], list[str]]:
        """Judge every input text: the report, and each text as the upstream may read it (redacted). A
        block raises. Nothing is written back: the caller makes the redacted request."""
        outcome = await self.engine.run(Stage.INPUT, resolved.policy.input, [slot.text for slot in slots])
        report = stage_report(outcome, [slot.where for slot in slots])
        for slot, text in zip(slots, outcome.texts, strict=True):
            if text.decision == "block":
                self._refuse_input(resolved, slot, text, report)
        return report, [text.text for text in outcome.texts]

    @staticmethod
    def _refuse_input(
        resolved: ResolvedPolicy, slot: Slot, text: TextOutcome, report: dict[str, Any]
    ) -> None:
        if text.block_categories == [UNAVAILABLE]:
            raise GuardUnavailable(
                f"The {text.blocked_by} guard could not check the request, and policy '{resolved.name}' "
                "fails closed. Try again."
            )
        raise ContentFiltered(
            f"The request was blocked by the {text.blocked_by} guard "
            f"({', '.join(text.block_categories)}) in {slot.where}.",
            param=slot.where,
            guardrails={"policy": resolved.name, "input": report},
        )

    async def check_choices(
        self,
        resolved: ResolvedPolicy,
        choices: list[dict[str, Any]],
        slots_of: Callable[[dict[str, Any]], list[Slot]],
        refuse: Callable[[dict[str, Any], str], None],
        context: JudgeContext | None = None,
    ) -> list[dict[str, Any]]:
        """Judge every choice of a whole answer in one batch; apply each choice's decision in place."""
        per_choice = [slots_of(choice) for choice in choices]
        slots = [slot for group in per_choice for slot in group]
        judged = [slot.text for slot in slots]
        outcome = await self.engine.run(Stage.OUTPUT, resolved.policy.output, judged, context)
        reports = []
        offset = 0
        for choice, group in zip(choices, per_choice, strict=True):
            texts = outcome.texts[offset : offset + len(group)]
            part = StageOutcome(texts, [_slice_result(r, offset, len(group)) for r in outcome.results])
            offset += len(group)
            report = stage_report(part, [slot.where for slot in group])
            reports.append({"index": choice.get("index", 0), **report})
            blocked = part.blocked
            if blocked is not None:
                refuse(choice, self.refusal(resolved, blocked))
                continue
            for slot, text in zip(group, texts, strict=True):
                if text.text != slot.text:
                    slot.write(text.text)
                    drop_logprobs(choice)  # they would spell out what was redacted or cut
            if any(text.decision == "truncate" for text in texts):
                choice["finish_reason"] = "content_filter"  # cut short by a guard
            if any(text.annotate for text in texts) and group:
                note = next((t.annotation for t in texts if t.annotation), None) or resolved.policy.disclaimer
                group[0].write(group[0].text + note)
        return reports

    @staticmethod
    def refusal(resolved: ResolvedPolicy, blocked: TextOutcome) -> str:
        categories = ", ".join(blocked.block_categories)
        if blocked.block_categories == [UNAVAILABLE]:
            categories = "the guard was unavailable and the policy fails closed"
        return resolved.policy.refusal.format(guard=blocked.blocked_by, categories=categories)


def drop_logprobs(choice: dict[str, Any]) -> None:
    """A choice's logprobs go with any text a guard removed or rewrote: they spell its tokens. (Rebuilding
    them for a redacted text would mean inventing tokens and probabilities the model never gave.)"""
    if choice.get("logprobs") is not None:
        choice["logprobs"] = None


def _slice_result(result: Any, offset: int, length: int) -> Any:
    return msgspec.structs.replace(
        result,
        decisions=result.decisions[offset : offset + length],
        verdicts=result.verdicts[offset : offset + length],
    )
