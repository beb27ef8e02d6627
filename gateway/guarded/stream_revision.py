"""The ``revise`` action on a stream (``buffer`` mode): the answer so far revised, its rest replaced.

When a window of a choice's content draws ``revise`` (and nothing blocks), ``StreamGuard`` stops reading
the upstream and hands the answer so far to ``StreamReviser``: ``shown``, the text the client already
has, and ``held``, the failing window's text that was withheld. The critic critiques the whole, but
rewrites only what follows ``shown`` (text already released is never contradicted, see
``gateway.guarded.revision.RevisionJob``). A revision that passes every output rule is streamed in place
of the rest (``continuation``); anything else gets the rule's fallback, applied to the window.
"""

from __future__ import annotations

import msgspec

from feedback.events import StageReport
from gateway.context import RequestContext
from gateway.guarded.guardrails import ResolvedPolicy
from gateway.guarded.request import GuardedRequest
from gateway.guarded.revision import Revised, Reviser, RevisionJob, revise_rule
from guards.verdict import JudgeContext

REVISED_FINISH = "stop"  # the upstream was stopped: the revision is a whole answer of its own


class Continuation(msgspec.Struct, frozen=True):
    """What the client gets after the text it already has: the revision's rest, the disclaimer an
    ``annotate`` decision adds, and the choice's ``finish_reason``."""

    text: str
    note: str | None
    finish_reason: str


def continuation(resolved: ResolvedPolicy, shown: str, revised: Revised) -> Continuation | None:
    """The revision as it continues ``shown``, with what the re-check decided applied (a redaction, a
    cut, a disclaimer); None when the re-check changed text the client already has (it cannot be
    taken back)."""
    judged = revised.judged.outcome.texts[0]
    if not judged.text.startswith(shown):
        return None
    note = (judged.annotation or resolved.policy.disclaimer) if judged.annotate else None
    finish = "content_filter" if judged.decision == "truncate" else REVISED_FINISH
    return Continuation(judged.text[len(shown) :], note, finish)


class StreamReviser:
    """The ``Reviser`` bound to one streamed request."""

    def __init__(
        self,
        reviser: Reviser,
        context: RequestContext,
        request: GuardedRequest,
        judge_context: JudgeContext,
        event_id: str,
    ) -> None:
        self.reviser = reviser
        self.context = context
        self.request = request
        self.judge_context = judge_context
        self.event_id = event_id

    async def revise(
        self, shown: str, held: str, report: StageReport, where: str
    ) -> tuple[Revised | str, RevisionJob]:
        """Revise the answer so far (``shown`` + ``held``) for the ``revise`` rule that fired in
        ``report``: the revision that passed, or why none did; and the job, for the report."""
        rule = revise_rule(self.request.policy.policy.output, report)
        assert rule is not None  # only a window that drew ``revise`` is revised
        job = RevisionJob(self.request, rule, self.judge_context, held, report, where, shown)
        job.partial = True
        return await self.reviser.revise(self.context, job, self.event_id), job
