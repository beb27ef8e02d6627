"""What the gateway records about each completion: plain data, the schema the feedback loop reads.

The ``guardrails`` report is part of it: the gateway sends it to clients as well (in answers, in the
last chunk of a stream, in content_filter errors, per moderation result), so its JSON is a contract:
keys a report does not have are ``UNSET`` (absent), never null.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

SCHEMA_VERSION = 1

# Which of some guard decisions wins: ``guards.pipeline.most_severe``, passed in (feedback imports no guards).
Severity = Callable[[Sequence[str]], str]


class SpanReport(msgspec.Struct):
    """Where a guard found something: a position only, never the text (it may be what a redaction
    removed)."""

    where: str  # the slot of the request or answer: "messages[0].content", "choices[1]", ...
    start: int
    end: int
    label: str
    score: float


class ClaimReport(msgspec.Struct):
    """A guard's evidence about a part of the text: an unsupported claim, a matched source."""

    where: str
    kind: str
    detail: str
    source: str | None
    start: int
    end: int | None
    score: float | None


class GuardReport(msgspec.Struct, kw_only=True):
    """One guard's part in a stage: what it decided, and why."""

    guard: str
    action: str  # what its rule does on a violation
    decision: str
    categories: list[str] = []
    scores: dict[str, float] = {}  # the highest per category
    spans: list[SpanReport] = []
    claims: list[ClaimReport] | UnsetType = UNSET  # only when the guard gave evidence about a part
    latency_ms: float = 0.0
    error: str | None = None  # why the guard failed, when it did


class StageReport(msgspec.Struct):
    """The input stage, or one moderation input."""

    decision: str
    guards: list[GuardReport]


class RoundReport(msgspec.Struct, kw_only=True):
    """One round of a revision (``revise`` action): the critic's critique of an answer and its revision,
    and what the guards decided before and after."""

    round: int  # from 1
    critic_model: str
    principles: list[str]  # the ids of the constitution's principles applied
    # The critique, when the output guards let it through (it may quote the answer it criticises); absent
    # when they did not, or when the critic failed before giving one.
    critique: str | UnsetType = UNSET
    before: dict[str, str]  # guard → decision, on the answer the critic was given
    after: dict[str, str] | UnsetType = UNSET  # guard → decision, on the revision; absent: none came
    latency_ms: float  # the critic's two calls and the re-check


class RevisionReport(msgspec.Struct, kw_only=True):
    """How a choice was revised, or why it was not and what applied instead."""

    rounds: list[RoundReport]
    fallback: str | UnsetType = UNSET  # the rule's fallback action, when it applied to the original answer
    reason: str | UnsetType = UNSET  # why it applied: the critic timed out, failed, or no revision passed
    latency_ms: float = 0.0  # the whole revision
    # Streams: characters of the answer the client already had, which the revision continues unchanged.
    shown_chars: int | UnsetType = UNSET


class CandidateReport(msgspec.Struct, kw_only=True):
    """One of the answers best-of-n drew for a choice."""

    decision: str  # what the output guards decided on it
    reward: float | UnsetType = UNSET  # absent: not scored (blocked, or the reward model failed)


class BestOfNReport(msgspec.Struct, kw_only=True):
    """How a choice was picked by best-of-n (``policies.….best_of_n``): the answers drawn for it, in the
    order the upstream gave them, and which one the client got."""

    n: int
    candidates: list[CandidateReport]
    chosen: int | UnsetType = UNSET  # the candidate the client got; absent when every one was blocked
    min_reward: float | UnsetType = UNSET  # the policy's bar, when it has one
    below_min_reward: bool | UnsetType = UNSET  # the chosen one scored below it: the policy's action applied
    action: str | UnsetType = UNSET  # that action (flag, annotate, block), when it applied
    error: str | UnsetType = UNSET  # why no reward was given (the reward model failed or timed out)
    latency_ms: float = 0.0  # scoring the candidates


class ChoiceReport(msgspec.Struct, kw_only=True):
    """The output stage of one choice."""

    index: int
    decision: str
    windows: int | UnsetType = UNSET  # streams only: how many checks (windows, held tool calls) it took
    guards: list[GuardReport]
    # A ``revise`` rule fired: true when the client got a revision, false when the fallback applied.
    revised: bool | UnsetType = UNSET
    revision: RevisionReport | UnsetType = UNSET
    best_of_n: BestOfNReport | UnsetType = UNSET  # the choice is the best of several answers

    @classmethod
    def merge(cls, index: int, windows: Sequence[StageReport], most_severe: Severity) -> ChoiceReport:
        """A streamed choice's report from its windows' reports: per guard (in the order they first
        appear) the most severe decision, every category and span, the highest scores, the time summed,
        the first error, every window's claims. A guard's action is that of its first window."""
        guards: dict[str, GuardReport] = {}
        for window in windows:
            for entry in window.guards:
                merged = guards.get(entry.guard)
                if merged is None:
                    merged = guards[entry.guard] = msgspec.structs.replace(
                        entry,
                        decision="pass",
                        categories=[],
                        scores={},
                        spans=[],
                        claims=UNSET,
                        latency_ms=0.0,
                    )
                _fold(merged, entry, most_severe)
        decision = most_severe([window.decision for window in windows])
        return cls(index=index, decision=decision, windows=len(windows), guards=list(guards.values()))


def _fold(merged: GuardReport, entry: GuardReport, most_severe: Severity) -> None:
    merged.decision = most_severe([merged.decision, entry.decision])
    merged.categories = sorted(set(merged.categories) | set(entry.categories))
    for category, score in entry.scores.items():
        merged.scores[category] = max(score, merged.scores.get(category, score))  # negative too (a reward)
    merged.spans += entry.spans
    if entry.claims:  # a claim found in a later window is as much a finding as one in the first
        merged.claims = [*(merged.claims or []), *entry.claims]
    merged.latency_ms = round(merged.latency_ms + entry.latency_ms, 2)  # rounded as it adds up
    merged.error = merged.error or entry.error


class GuardrailsReport(msgspec.Struct, kw_only=True):
    """What the guards made of one request and its answer."""

    policy: str | UnsetType = UNSET  # absent for a sampled candidate's answer (only its output is judged)
    input: StageReport | UnsetType = UNSET  # absent when the policy has no input guards
    output: list[ChoiceReport] | UnsetType = UNSET  # per choice, by index; absent before the answer


class Timings(msgspec.Struct):
    total_ms: float
    upstream_ms: float
    overhead_ms: float


class BestOfNRecord(msgspec.Struct, kw_only=True):
    """An event whose answers best-of-n drew: the original (``chosen``: what the client got, the best of
    each group) or one that lost (a candidate, one choice). The rewards let the export measure how often
    people agree with the reward model."""

    n: int  # answers drawn per choice
    temperature: float
    reward_model: str
    chosen: bool
    rewards: dict[int, float] = {}  # choice index → its reward; a choice not scored (blocked) is absent


class CompletionEvent(msgspec.Struct, kw_only=True):
    schema: int = SCHEMA_VERSION
    # The gateway's own id for this completion, unique: what the feedback store is keyed by. Never the
    # client's x-request-id, which two tenants (or one careless client) can send alike.
    id: str
    completion_id: str  # the upstream's id for the completion ("chatcmpl-...")
    created: float  # unix time
    tenant: str
    model: str
    endpoint: str  # "chat.completions", "responses" (recorded as its chat translation) or "completions"
    stream: bool
    # The request as the upstream received it: after the input guards' redaction, without the
    # gateway's own fields. Nothing unredacted is ever recorded.
    request: dict[str, Any]
    choices: list[dict[str, Any]]  # as the client received them (after output guards)
    guardrails: GuardrailsReport | None = None
    usage: dict[str, Any] | None = None
    timings: Timings | None = None
    complete: bool = True  # false: the stream ended early (client gone, upstream failed)
    # Extra candidates the gateway asked for after answering (sampling) name the request they are for.
    candidate_of: str | None = None
    sampling: dict[str, Any] | None = None  # what was changed for this candidate (temperature, model)
    # On an original: how many extra candidates were asked for, so the sync knows when the set is whole.
    candidates_requested: int = 0
    # The x-request-id the client saw (its own, or one the gateway made): feedback may name it.
    request_id: str | None = None
    best_of_n: BestOfNRecord | UnsetType = UNSET  # the answers came from best-of-n


class FeedbackEvent(msgspec.Struct, kw_only=True):
    """A user's judgement reported by the application: thumbs, or the choice they preferred."""

    schema: int = SCHEMA_VERSION
    id: str  # this feedback's own id
    created: float
    tenant: str
    completion_id: str  # the upstream's completion id, or the gateway's request id
    rating: str | None = None  # "up" or "down"
    preferred_choice: int | None = None
    comment: str | None = None
    user: str | None = None


class RevisionEvent(msgspec.Struct, kw_only=True):
    """AI feedback (Constitutional AI): an answer a guard found fault with, and the critic's revision
    that the guards passed, with the principles applied. The rejected/chosen pair of RLAIF, and the
    supervised example of SL-CAI. Never mixed silently with people's rankings: its own kind of event."""

    schema: int = SCHEMA_VERSION
    id: str  # this revision's own id
    created: float
    tenant: str
    origin: str  # "gateway" (a revise rule at serving time) or "constitute" (offline)
    request_id: str  # the completion's request id (the gateway's), or the prompt's id offline
    model: str  # the model that answered
    critic_model: str
    request: dict[str, Any]  # as the upstream saw it (placeholders, never personal values)
    rejected: str  # the answer as the model gave it
    chosen: str  # the final revision, which passed every output guard
    principles: list[str]  # the ids of the principles applied
    rounds: int = 1
    critiques: list[str] = []
    # A stream's revision: ``rejected`` is the answer up to where the gateway stopped its stream.
    partial: bool = False


Event = CompletionEvent | FeedbackEvent | RevisionEvent


def event_kind(event: Event) -> str:
    if isinstance(event, RevisionEvent):
        return "revision"
    return "feedback" if isinstance(event, FeedbackEvent) else "completion"


def encode_event(event: Event) -> bytes:
    return msgspec.json.encode(event)


def decode_event(data: bytes) -> CompletionEvent:
    return msgspec.json.decode(data, type=CompletionEvent)


def decode_feedback(data: bytes) -> FeedbackEvent:
    return msgspec.json.decode(data, type=FeedbackEvent)


def decode_revision(data: bytes) -> RevisionEvent:
    return msgspec.json.decode(data, type=RevisionEvent)
