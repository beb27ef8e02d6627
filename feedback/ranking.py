"""What annotators rank and what they answer, whatever tool they rank in: a ``RankingTask`` per prompt (its
candidates being every choice of the original completion, n>1, of the extra candidates sampled for it,
every answer best-of-n drew for it, and both sides of a critic's revision of its answer where one was
recorded), built from recorded events, and an ``AnnotationRecord`` per annotator's ranking of one.

Best-of-n's answers are shown blind, like every answer: as "Answer A", "Answer B", ... in an order
shuffled per task (``feedback.labelstudio.tasks``), and without their rewards, so that people's
rankings can measure the reward model (``feedback.preferences.reward_agreement``) rather than follow it.

A ``RankingTask`` keeps everything the export needs: the redacted request, each answer with its model,
sampling and guard flags."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import msgspec
from msgspec import UnsetType

from feedback.events import ChoiceReport, CompletionEvent, RevisionEvent, RevisionReport, RoundReport
from feedback.messages import message_text


class Candidate(msgspec.Struct, kw_only=True):
    id: str  # "<event id>:<choice index>", unique within the task
    text: str  # what the client received (a refusal for a blocked answer)
    model: str
    # "answer" (what the client got), "candidate" (sampled afterwards), "revision" (a critic's rewrite,
    # served or not), "original" (an answer a revision replaced: the client never saw it) or "best-of-n"
    # (drawn by best-of-n: ``chosen`` says whether the client got it)
    origin: str
    sampling: dict[str, Any] | None = None
    flags: list[str] = []  # "<guard>: <decision>" for every guard that did not pass
    blocked: bool = False
    redacted: bool = False
    finish_reason: str | None = None
    # Best-of-n: the reward the reward model gave it (None: not scored), which model, and whether it won.
    reward: float | None = None
    reward_model: str | None = None
    chosen: bool | None = None


class RankingTask(msgspec.Struct, kw_only=True):
    task_key: str
    request_id: str
    tenant: str
    model: str
    endpoint: str
    created: float
    request: dict[str, Any]  # as the upstream received it: after the input guards' redaction
    prompt: str  # the conversation as annotators read it (``transcript``)
    candidates: list[Candidate]
    policy: str | None = None  # the guard policy the original request was served under
    # A gold task (a known best answer, mixed into the queue to measure annotators): that answer's id.
    gold: str | None = None


class AnnotationRecord(msgspec.Struct, kw_only=True):
    """One annotator's ranking of one task, as stored for the export."""

    task_key: str
    annotation_id: int
    ls_task_id: int
    project: int | None
    annotator: str
    places: list[list[str]]  # candidate ids, best first; ids in one inner list are tied
    created_at: str
    updated_at: str
    lead_time_s: float | None = None
    # Candidate ids in the order the annotator saw them (Answer A first): what position bias is measured
    # on. None: recorded before the order was kept.
    shown: list[str] | None = None


def transcript(request: dict[str, Any]) -> str:
    """The conversation as an annotator should read it: ``role: text`` a message, or the legacy prompt."""
    if "messages" in request:
        return "\n\n".join(
            f"{message.get('role', 'user')}: {message_text(message)}" for message in request["messages"]
        )
    return str(request.get("prompt", ""))


def _answer(choice: dict[str, Any]) -> tuple[str, bool]:
    """The text shown for a choice, and whether it was blocked."""
    message = choice.get("message") or {}
    if message.get("content") is None and message.get("refusal"):
        return f"[blocked] {message['refusal']}", True
    return str(message.get("content") if "message" in choice else choice.get("text", "")), False


Decisions = list[tuple[str, str]]  # (guard, decision)


def _report(event: CompletionEvent, index: int) -> ChoiceReport | None:
    output = (event.guardrails.output or []) if event.guardrails is not None else []
    return next((r for r in output if r.index == index), None)


def _served_revision(report: ChoiceReport | None) -> list[RoundReport]:
    """The rounds of the revision the client got instead of the upstream's answer; empty if it got none."""
    if report is None or report.revised is not True or not isinstance(report.revision, RevisionReport):
        return []
    rounds = report.revision.rounds
    return rounds if rounds and isinstance(rounds[-1].after, dict) else []


def _flags(decisions: Decisions | None) -> list[str]:
    if decisions is None:
        return ["no guard report"]
    return [f"{guard}: {decision}" for guard, decision in decisions if decision != "pass"]


def task_key(request_id: str) -> str:
    """Stable per prompt, so a task pushed twice is recognised (delivery is at least once)."""
    return hashlib.sha256(request_id.encode()).hexdigest()[:32]


def _candidates(event: CompletionEvent, origin: str) -> list[Candidate]:
    """Each choice as the client got it. A choice a ``revise`` rule replaced with a critic's revision is
    that revision: titled so, with what the guards said of the revision (the report's guards judged the
    answer it replaced)."""
    found = []
    for choice in event.choices:
        index = choice.get("index", 0)
        text, blocked = _answer(choice)
        report = _report(event, index)
        decisions = None if report is None else [(g.guard, g.decision) for g in report.guards]
        kind, model, sampling = origin, event.model, event.sampling
        if rounds := _served_revision(report):
            last = rounds[-1]
            decisions = list(last.after.items()) if isinstance(last.after, dict) else None
            kind, model, sampling = "revision", last.critic_model, {"critic": last.critic_model}
        candidate = Candidate(
            id=f"{event.id}:{index}",
            text=text,
            model=model,
            origin=kind,
            sampling=sampling,
            flags=_flags(decisions),
            blocked=blocked or any(d == "block" for _, d in decisions or []),
            redacted=any(d == "redact" for _, d in decisions or []),
            finish_reason=choice.get("finish_reason"),
        )
        found.append(_drawn(candidate, event, index))
    return found


def _replaced(events: Sequence[CompletionEvent]) -> dict[str, Decisions]:
    """What the guards said of each answer a served revision replaced, by the text the client got."""
    found = {}
    for event in events:
        for choice in event.choices:
            if rounds := _served_revision(_report(event, choice.get("index", 0))):
                found[_answer(choice)[0]] = list(rounds[0].before.items())
    return found


def _drawn(candidate: Candidate, event: CompletionEvent, index: int) -> Candidate:
    """A best-of-n answer, the same whether it won or lost as far as annotators can see (``origin`` and
    ``sampling`` are in the title Label Studio shows), with its reward kept for the export."""
    drawn = event.best_of_n
    if isinstance(drawn, UnsetType):
        return candidate
    return msgspec.structs.replace(
        candidate,
        origin="best-of-n",
        sampling={"best_of_n": drawn.n, "temperature": drawn.temperature},
        reward=drawn.rewards.get(index),
        reward_model=drawn.reward_model,
        chosen=drawn.chosen,
    )


def _blind_order(items: list[Candidate], key: str) -> list[Candidate]:
    """A task with best-of-n answers, in an order fixed by the task but unrelated to which one won."""
    if not any(item.origin == "best-of-n" for item in items):
        return items
    return sorted(items, key=lambda item: hashlib.sha256(f"{key}:{item.id}".encode()).hexdigest())


def revision_candidate(revision: RevisionEvent) -> Candidate:
    """A critic's revision as a candidate. Offline revisions (``hhh feedback constitute``) were never
    judged by the guards, and say so."""
    checked = revision.origin == "gateway"
    return Candidate(
        id=f"{revision.id}:revision", text=revision.chosen, model=revision.critic_model, origin="revision",
        sampling={"critic": revision.critic_model},
        flags=[] if checked else ["not checked by the guards (offline revision)"],
    )  # fmt: skip


def _replaced_candidate(revision: RevisionEvent, decisions: Decisions | None) -> Candidate:
    """The answer a revision replaced (``rejected``) as a candidate, with the guards' ``decisions`` on it
    where known. The client never saw it when a ``revise`` rule served the revision; people ranking it next
    to the revision is what checks the AI's preference."""
    flags = _flags(decisions)
    if revision.partial:
        flags.append("cut short (the stream was stopped here to revise it)")
    return Candidate(
        id=f"{revision.id}:original", text=revision.rejected, model=revision.model, origin="original",
        flags=flags, redacted=any(d == "redact" for _, d in decisions or []),
    )  # fmt: skip


def _revision_candidates(
    revisions: Sequence[RevisionEvent], items: list[Candidate], replaced: dict[str, Decisions]
) -> list[Candidate]:
    """Both sides of every revision next to the answers, so people can check the AI's preference: the
    revision, unless it is already a candidate (the client got it), and the answer it replaced, unless it
    is (an offline revision of a recorded answer). No text is shown twice."""
    seen = {item.text for item in items}
    found = []
    for revision in revisions:
        if revision.chosen not in seen:
            seen.add(revision.chosen)
            found.append(revision_candidate(revision))
        if revision.rejected not in seen:
            seen.add(revision.rejected)
            found.append(_replaced_candidate(revision, replaced.get(revision.chosen)))
    return found


def ranking_task(
    original: CompletionEvent | None,
    candidates: list[CompletionEvent],
    revisions: Sequence[RevisionEvent] = (),
) -> RankingTask | None:
    """The task for one prompt, or None when there are fewer than two whole answers to rank. An answer
    whose stream ended early (client gone, upstream failed) is not ranked: it was never finished. Without
    the original (it may be lost, or not recorded yet) the sampled candidates can still be ranked. A
    recorded revision of the answer (``revisions``) adds what of its two sides is not a candidate yet."""
    head = original or (candidates[0] if candidates else None)
    if head is None:
        return None
    items = _candidates(original, "answer") if original is not None and original.complete else []
    for event in candidates:
        if event.complete:
            items += _candidates(event, "candidate")
    if items:
        judged = [e for e in (original, *candidates) if e is not None and e.complete]
        items += _revision_candidates(revisions, items, _replaced(judged))
    if len(items) < 2:
        return None
    request_id = head.candidate_of or head.id
    key = task_key(request_id)
    return RankingTask(
        task_key=key,
        request_id=request_id,
        tenant=head.tenant,
        model=original.model if original is not None else head.model,
        endpoint=head.endpoint,
        created=head.created,
        request=head.request,
        prompt=transcript(head.request),
        candidates=_blind_order(items, key),
        policy=(head.guardrails.policy or None) if head.guardrails is not None else None,
    )
