"""What each guard reads (a normalised view of each text, see ``guards.normalise``), and how what it
finds is put back on the text as sent."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from guards.normalise import Normalised, TextView, views
from guards.protocol import Guard
from guards.redaction import apply_spans
from guards.verdict import Evidence, JudgeContext, Span, Verdict

# Up to this many characters a request's views are made on the event loop (about a millisecond at
# most); beyond, in a worker thread, so that a large request does not stall other clients.
INLINE_VIEW_CHARS = 4_096


def view_of(guard: Guard) -> TextView:
    """The view a guard reads: the one it declares as ``view``, else the canonical one."""
    view = getattr(guard, "view", TextView.CANONICAL)
    return view if isinstance(view, TextView) else TextView.CANONICAL


async def make_views(texts: Sequence[str], wanted: set[TextView]) -> list[dict[TextView, Normalised]]:
    """Per text, the views asked for."""

    def make() -> list[dict[TextView, Normalised]]:
        return [views(text, wanted) for text in texts]

    if wanted == {TextView.RAW} or sum(map(len, texts)) <= INLINE_VIEW_CHARS:
        return make()
    return await asyncio.to_thread(make)


def focus_in_view(context: JudgeContext, seen: Sequence[Normalised]) -> JudgeContext:
    """The context, with its focus (where a stream window's new text starts, given with one text)
    moved into that text's view."""
    if context.focus_start and len(seen) == 1 and not seen[0].identity:
        return msgspec.structs.replace(context, focus_start=seen[0].to_view(context.focus_start))
    return context


def verdict_to_original(verdict: Verdict, text: str, view: Normalised) -> Verdict:
    """``verdict`` on a view, with its spans and evidence moved onto ``text``, the original."""
    if view.identity:
        return verdict
    spans = [_span_back(span, view) for span in verdict.spans]
    evidence = [_evidence_back(item, view) for item in verdict.evidence]
    rewritten = apply_spans(text, spans) if verdict.rewritten is not None else None
    return msgspec.structs.replace(verdict, spans=spans, evidence=evidence, rewritten=rewritten)


def _span_back(span: Span, view: Normalised) -> Span:
    start, end = view.span_to_original(span.start, span.end)
    return msgspec.structs.replace(span, start=start, end=end)


def _evidence_back(item: Evidence, view: Normalised) -> Evidence:
    if item.start is None or item.end is None:
        return item
    start, end = view.span_to_original(item.start, item.end)
    return msgspec.structs.replace(item, start=start, end=end)
