"""One streamed text of a choice (``content``, ``refusal``, reasoning, or a legacy ``text``): its windows,
and the logprobs that came with it, held until the text they belong to is released.

Logprobs arrive per upstream chunk and cover that chunk's text, ``[start, end)`` of the channel's raw
text. Released text releases the entries it wholly covers; an entry that overlaps a redaction is dropped,
and so is every entry of text that is withheld (cut or blocked): a logprob spells its token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from guards.policy import StreamPolicy
from guards.verdict import Span
from guards.windows import WindowCutter

Logprobs = dict[str, Any]


class HeldLogprobs:
    def __init__(self) -> None:
        self._entries: list[tuple[int, int, Logprobs]] = []
        self._received = 0  # raw characters appended so far
        self._released = 0  # raw characters released so far
        self._shift = 0  # released output length minus released raw length (redactions change lengths)

    def add(self, length: int, logprobs: Logprobs | None) -> None:
        start = self._received
        self._received += length
        if logprobs:
            self._entries.append((start, self._received, logprobs))

    def release(self, length: int, spans: Sequence[Span]) -> Logprobs | None:
        """``length`` raw characters went out, rewritten by ``spans`` (positions relative to them).
        Returns the logprobs to send with them, or None."""
        base, end = self._released, self._released + length
        out: list[Logprobs] = []
        kept = []
        for start, stop, logprobs in self._entries:
            if any(base + s.start < stop and start < base + s.end for s in spans):
                continue  # its tokens spell (part of) what was redacted
            if stop > end:
                kept.append((start, stop, logprobs))
                continue
            shift = self._shift + sum(_growth(s) for s in spans if base + s.end <= start)
            out.append(_shifted(logprobs, shift))
        self._entries = kept
        self._released = end
        self._shift += sum(_growth(s) for s in spans)
        return _merge(out) if out else None

    def discard(self) -> None:
        self._entries = []


def _growth(span: Span) -> int:
    return len(span.replacement or "") - (span.end - span.start)


def _shifted(logprobs: Logprobs, shift: int) -> Logprobs:
    """Legacy ``text_offset`` counts characters of the text the client sees: redactions move them."""
    offsets = logprobs.get("text_offset")
    if not shift or not isinstance(offsets, list):
        return logprobs
    return {**logprobs, "text_offset": [o + shift if isinstance(o, int) else o for o in offsets]}


def _merge(entries: list[Logprobs]) -> Logprobs:
    """Several chunks' logprobs as one: lists (tokens, offsets, chat token entries) concatenated.

    >>> _merge([{"content": [1], "refusal": None}, {"content": [2, 3], "refusal": None}])
    {'content': [1, 2, 3], 'refusal': None}
    """
    merged: Logprobs = {}
    for logprobs in entries:
        for key, value in logprobs.items():
            if isinstance(value, list):
                merged[key] = [*(merged.get(key) or []), *value]
            else:
                merged.setdefault(key, value)
    return merged


class Channel:
    def __init__(self, field: str, stream: StreamPolicy) -> None:
        self.field = field
        self.cutter = WindowCutter(stream.min_chars, stream.max_chars, stream.overlap_chars)
        self.logprobs = HeldLogprobs()
        self.shown: list[str] = []  # the text released to the client (buffer mode), as it went out
