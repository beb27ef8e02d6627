"""Best-of-n at serving time (``policies.….best_of_n``): each choice the client gets is the best of ``n``
answers, by a reward model, among those the output guards pass.

For a request with ``n`` choices (1 when it does not say) the upstream is asked once for ``n x best_of_n.n``
answers at the policy's temperature, through the proxy (``n`` where the upstream supports it, else
concurrent calls). Candidate ``j`` belongs to choice ``j // best_of_n.n``. Then:

1. every candidate is judged by the output guards, in one batch;
2. every candidate not blocked is scored by the reward model, in one batch (the prompt as one text, the
   answer's content as the guards left it: ``guards.models.reward_format``);
3. per choice, the candidate with the highest reward among those that **pass** wins (ties: the first).
   A candidate on which a ``revise`` rule fired does not pass; only when no candidate of a choice passes
   does the best of those go through the normal revise path (critic, or the rule's fallback). When every
   candidate is blocked, the choice is the first one's refusal, as without best-of-n;
4. a winner scored below ``min_reward`` gets the policy's ``action``: ``flag`` (reported), ``annotate`` (the
   disclaimer appended) or ``block`` (refused).

Fail modes: an upstream failure of any candidate call fails the request with that error, as for any
``n > 1`` (the policy's promise of the best of ``n`` is not silently weakened); a reward model that fails
or times out leaves the candidates unscored: the first that passes wins, the report says why, and a
``min_reward`` bar counts as not met.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from msgspec import UNSET

from feedback.assembler import EventMeta, event_from_response
from feedback.events import (
    BestOfNRecord,
    BestOfNReport,
    CandidateReport,
    ChoiceReport,
    CompletionEvent,
    GuardrailsReport,
)
from gateway.context import RequestContext
from gateway.errors import UpstreamBadResponse
from gateway.guarded.endpoints import AnswerText
from gateway.guarded.guardrails import ChoiceJudgement, Guardrails
from gateway.guarded.request import GuardedRequest
from gateway.guarded.revision import NOT_REVISED, Reviser
from gateway.guarded.reward_scorers import RewardScorer
from gateway.relay.proxy import Proxy
from guards.pipeline import most_severe
from guards.policy import Action, BestOfN

log = logging.getLogger("hhh.best_of_n")

_CONTENT = frozenset({"message.content", "text"})  # what a reward model reads of a choice
_NOT_DRAWN = frozenset({"stream_options", "best_of"})  # fields of the client's body not sent to draw
NOT_CHOSEN = "a best-of-n candidate that was not chosen is not revised: the rule's fallback applied"
BELOW_MIN_REWARD = "reward {reward} below the policy's min_reward {min_reward}"


class Scores(msgspec.Struct):
    rewards: list[float | None]  # per candidate; None: not scored
    error: str | None = None
    latency_ms: float = 0.0


class Picked(msgspec.Struct):
    """What best-of-n made of one request: the answer the client gets (its choices the winners, indexed
    0…n-1; ``usage`` that of every candidate), their reports, and what to record."""

    body: dict[str, Any]
    content_type: str
    reports: list[ChoiceReport]
    record: BestOfNRecord  # on the original event: the winners' rewards
    losers: list[tuple[dict[str, Any], ChoiceReport, float | None]]  # (choice, report, reward)


def drawn_request(request: GuardedRequest, settings: BestOfN) -> GuardedRequest:
    """The request as the upstream is asked it: whole, ``n x best_of_n.n`` answers, the policy's
    temperature (the client's would let it draw n answers alike). A legacy ``best_of`` goes: the gateway
    picks here, and an upstream refuses ``best_of`` below ``n``."""
    total = request.n * settings.n
    body = {key: value for key, value in request.body.items() if key not in _NOT_DRAWN}
    body.update(n=total, temperature=settings.temperature, stream=False)
    return msgspec.structs.replace(request.with_body(body), stream=False, n=total, include_usage=False)


def answer_text(judgement: ChoiceJudgement) -> str:
    """What the reward model reads of a candidate: its content as the guards left it (redactions
    applied), else every text it has (tool-call arguments)."""
    pairs = list(zip(judgement.slots, judgement.judged.outcome.texts, strict=True))
    content = [text.text for slot, text in pairs if slot.where in _CONTENT]
    return "".join(content) if content else "\n".join(text.text for _, text in pairs)


def _not_blocked(judgement: ChoiceJudgement) -> bool:
    return judgement.judged.outcome.blocked is None


def _passes(judgement: ChoiceJudgement) -> bool:
    return _not_blocked(judgement) and not judgement.revise


def pick_winner(judgements: Sequence[ChoiceJudgement], rewards: Sequence[float | None]) -> int:
    """Within one choice's candidates: the best that passes; else the best not blocked (to be revised);
    else the first (every one blocked). Unscored candidates rank below scored ones; ties go to the first."""
    for eligible in (_passes, _not_blocked):
        found = [i for i, judgement in enumerate(judgements) if eligible(judgement)]
        if found:
            return max(found, key=lambda i: (rewards[i] is not None, rewards[i] or 0.0, -i))
    return 0


class BestOfNSampler:
    """Draws, judges, scores and picks; the completion service records and answers."""

    def __init__(
        self,
        proxy: Proxy,
        guardrails: Guardrails,
        scorers: Mapping[str, RewardScorer],
        reviser: Reviser | None = None,
    ) -> None:
        self.proxy = proxy
        self.guardrails = guardrails
        self.scorers = dict(scorers)
        self.reviser = reviser  # None: a revise decision on a winner gets its rule's fallback

    async def pick(self, context: RequestContext, request: GuardedRequest, event_id: str) -> Picked:
        settings = request.policy.policy.best_of_n
        answer = request.endpoint.answer
        assert settings is not None
        assert answer is not None
        upstream = await self.proxy.complete(context, drawn_request(request, settings).forward_call())
        body = msgspec.json.decode(upstream.content)
        choices = self._candidates(body, request.n * settings.n)
        judge_context = request.judge_context()
        judgements = await self.guardrails.judge_choices(request.policy, choices, answer.slots, judge_context)
        scores = await self._score(settings, judge_context.prompt, judgements)
        k = settings.n
        parts = [slice(g * k, (g + 1) * k) for g in range(request.n)]
        winners = [p.start + pick_winner(judgements[p], scores.rewards[p]) for p in parts]
        settled = [judgements[w] for w in winners]
        if self.reviser is not None:
            reports = await self.reviser.settle(
                context, request, settled, judge_context, event_id, answer.refuse
            )
        else:
            reports = [self._apply(request, judgement, NOT_REVISED) for judgement in settled]
        for group, (part, winner, report) in enumerate(zip(parts, winners, reports, strict=True)):
            report.best_of_n = _report(settings, judgements[part], scores.rewards[part], scores, winner % k)
            self._bar(request, answer, settings, judgements[winner].choice, report, scores.rewards[winner])
            judgements[winner].choice["index"] = report.index = group
        losers = [
            (judgements[i].choice, self._apply(request, judgements[i], NOT_CHOSEN), scores.rewards[i])
            for i in range(len(judgements))
            if i not in winners
        ]
        body["choices"] = [judgements[w].choice for w in winners]
        if not body.get("usage"):
            body["usage"] = _estimated_usage(request.prompt_chars, judgements)
        record = BestOfNRecord(
            n=k, temperature=settings.temperature, reward_model=settings.reward_model, chosen=True,
            rewards={g: r for g, w in enumerate(winners) if (r := scores.rewards[w]) is not None},
        )  # fmt: skip
        return Picked(body, upstream.content_type, reports, record, losers)

    @staticmethod
    def _candidates(body: dict[str, Any], total: int) -> list[dict[str, Any]]:
        choices = sorted(body.get("choices") or [], key=lambda choice: choice.get("index", 0))
        if len(choices) < total:  # the proxy asks again for what an upstream ignoring n left out
            raise UpstreamBadResponse(
                f"The upstream gave {len(choices)} of the {total} answers asked for best-of-n."
            )
        return choices[:total]

    async def _score(self, settings: BestOfN, prompt: str, judgements: Sequence[ChoiceJudgement]) -> Scores:
        """Every candidate not blocked, scored in one batch; a failure or time-out leaves them unscored."""
        rewards: list[float | None] = [None] * len(judgements)
        scored = [i for i, judgement in enumerate(judgements) if _not_blocked(judgement)]
        if not scored:
            return Scores(rewards)
        started = time.perf_counter()
        items = [(prompt, answer_text(judgements[i])) for i in scored]
        scorer = self.scorers.get(settings.reward_model)
        if scorer is None:  # loaded at start-up for every policy (``load_reward_scorers``)
            return Scores(rewards, f"the reward model {settings.reward_model!r} is not loaded")
        try:
            async with asyncio.timeout(settings.timeout_ms / 1000):
                found = await scorer.score(items)
            if len(found) != len(items):
                raise ValueError(f"{len(found)} rewards for {len(items)} answers")
        except TimeoutError:
            error = f"the reward model did not answer within {settings.timeout_ms} ms"
        except Exception as exc:  # noqa: BLE001 - a failing reward model has a documented fail mode
            log.warning("reward model %s failed: %r", settings.reward_model, exc)
            error = f"the reward model failed ({type(exc).__name__})"
        else:
            for i, reward in zip(scored, found, strict=True):
                rewards[i] = reward if math.isfinite(reward) else None
            return Scores(rewards, None, _ms(started))
        return Scores(rewards, error, _ms(started))

    def _apply(self, request: GuardedRequest, judgement: ChoiceJudgement, reason: str) -> ChoiceReport:
        """The guards' decision applied to a candidate in place (a ``revise`` gets its rule's fallback)."""
        answer = request.endpoint.answer
        assert answer is not None
        if judgement.revise:
            return self.guardrails.fallback(request.policy, judgement, reason, answer.refuse)
        self.guardrails.apply_choice(request.policy, judgement, answer.refuse)
        return judgement.report

    def _bar(
        self,
        request: GuardedRequest,
        answer: AnswerText,
        settings: BestOfN,
        choice: dict[str, Any],
        report: ChoiceReport,
        reward: float | None,
    ) -> None:
        """``min_reward``: a winner below it (or unscored) gets the policy's action."""
        assert isinstance(report.best_of_n, BestOfNReport)
        if settings.min_reward is None or report.decision == "block":
            return
        below = reward is None or reward < settings.min_reward
        report.best_of_n.below_min_reward = below
        if not below:
            return
        report.best_of_n.action = settings.action.value
        report.decision = most_severe([report.decision, settings.action.value])
        if settings.action is Action.BLOCK:
            shown = "unknown" if reward is None else f"{reward:.4g}"
            categories = BELOW_MIN_REWARD.format(reward=shown, min_reward=settings.min_reward)
            refusal = request.policy.policy.refusal.format(guard="best_of_n", categories=categories)
            answer.refuse(choice, refusal)
        elif settings.action is Action.ANNOTATE:
            content = [slot for slot in answer.slots(choice) if slot.where in _CONTENT]
            if content:
                content[0].write(content[0].text + request.policy.policy.disclaimer)


def _report(
    settings: BestOfN,
    members: Sequence[ChoiceJudgement],
    rewards: Sequence[float | None],
    scores: Scores,
    chosen: int,
) -> BestOfNReport:
    """One choice's part: its candidates' decisions and rewards, and which one the client got."""
    return BestOfNReport(
        n=settings.n,
        candidates=[
            CandidateReport(
                decision=judgement.judged.report.decision,
                reward=UNSET if reward is None else round(reward, 4),
            )
            for judgement, reward in zip(members, rewards, strict=True)
        ],
        chosen=chosen if any(_not_blocked(j) for j in members) else UNSET,
        min_reward=UNSET if settings.min_reward is None else settings.min_reward,
        error=UNSET if scores.error is None else scores.error,
        latency_ms=scores.latency_ms,
    )


def _estimated_usage(prompt_chars: int, judgements: Sequence[ChoiceJudgement]) -> dict[str, Any]:
    """For an upstream that reports no usage: every candidate's, estimated as the relay estimates (about
    four characters a token), and marked so."""
    prompt = max(1, round(prompt_chars / 4))
    completion = round(sum(len(t.text) for j in judgements for t in j.judged.outcome.texts) / 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "estimated": True}  # fmt: skip


def candidate_events(meta: EventMeta, request: GuardedRequest, picked: Picked) -> list[CompletionEvent]:
    """The candidates that lost, one event each, as candidates of the original (``meta``'s event): so
    ranking tasks show every answer drawn, with its reward (never shown to annotators). They carry no
    completion id: the client never saw them, so no feedback may name them (the upstream's id is the
    answer's, whose feedback must find the original)."""
    settings = request.policy.policy.best_of_n
    assert settings is not None
    events = []
    for number, (choice, report, reward) in enumerate(picked.losers):
        body = {
            "choices": [{**choice, "index": 0}],
            "guardrails": GuardrailsReport(
                policy=request.policy.name, output=[msgspec.structs.replace(report, index=0)]
            ),
        }
        own = f"{meta.request_id}.best-of-n.{number}"
        event = event_from_response(
            EventMeta(own, meta.tenant, meta.model, meta.endpoint, False), request.body, body, None
        )
        event.candidate_of = meta.event_id
        event.sampling = {"best_of_n": settings.n, "temperature": settings.temperature}
        event.best_of_n = msgspec.structs.replace(
            picked.record, chosen=False, rewards={} if reward is None else {0: reward}
        )
        events.append(event)
    return events


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
