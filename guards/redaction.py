"""Span rewriting, shared by every guard that can make a text safe instead of refusing it."""

from __future__ import annotations

from collections.abc import Iterable

from guards.verdict import Span


def non_overlapping(spans: Iterable[Span]) -> list[Span]:
    """Keep, of overlapping spans, the one that starts first (the longer one on a tie).

    >>> a, b, c = Span(0, 10, "EMAIL"), Span(4, 8, "URL"), Span(12, 15, "PERSON")
    >>> [s.label for s in non_overlapping([b, c, a])]
    ['EMAIL', 'PERSON']
    """
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept


def apply_spans(text: str, spans: Iterable[Span]) -> str:
    """Replace every span that carries a replacement.

    >>> apply_spans("Mail bob@x.io now", [Span(5, 13, "EMAIL_ADDRESS", replacement="<EMAIL_ADDRESS>")])
    'Mail <EMAIL_ADDRESS> now'
    """
    pieces: list[str] = []
    cursor = 0
    for span in non_overlapping(s for s in spans if s.replacement is not None):
        pieces.append(text[cursor : span.start])
        pieces.append(span.replacement or "")
        cursor = span.end
    pieces.append(text[cursor:])
    return "".join(pieces)
