"""Span rewriting, shared by every guard that can make a text safe instead of refusing it."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from guards.verdict import Span


def merge_overlapping(spans: Iterable[Span]) -> list[Span]:
    """Spans in order, overlapping ones merged into one that covers them all (with the label and
    replacement of the first): whatever any span covers stays covered, so adding a guard's spans can
    never uncover another guard's.

    >>> a, b, c = Span(0, 10, "EMAIL"), Span(4, 12, "URL"), Span(12, 15, "PERSON")
    >>> [(s.start, s.end, s.label) for s in merge_overlapping([b, c, a])]
    [(0, 12, 'EMAIL'), (12, 15, 'PERSON')]
    """
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if kept and span.start < kept[-1].end:
            if span.end > kept[-1].end:
                kept[-1] = msgspec.structs.replace(kept[-1], end=span.end)
            continue
        kept.append(span)
    return kept


def apply_spans(text: str, spans: Iterable[Span]) -> str:
    """Replace every span that carries a replacement.

    >>> apply_spans("Mail bob@x.io now", [Span(5, 13, "EMAIL_ADDRESS", replacement="<EMAIL_ADDRESS>")])
    'Mail <EMAIL_ADDRESS> now'
    """
    pieces: list[str] = []
    cursor = 0
    for span in merge_overlapping(s for s in spans if s.replacement is not None):
        pieces.append(text[cursor : span.start])
        pieces.append(span.replacement or "")
        cursor = span.end
    pieces.append(text[cursor:])
    return "".join(pieces)
