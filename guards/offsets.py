"""Offset maps between a text and a rewritten view of it, so that what a guard finds in the view (spans,
evidence) can be put back on the text the client sent.

A rewrite is a sorted list of non-overlapping edits (replace ``original[start:end]`` by a string). Only
edits that change the length are kept in the map: a one-for-one character swap moves nothing. Positions
outside edits shift by the edits before them; a position inside an edit widens to the edit's bounds, so
a span always covers at least what it covered in the view. Lookups are binary searches.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable


class OffsetMap:
    """Where the positions of a view fall in the text it was made from.

    >>> text, offsets = rewrite("a\\u200bb\\ufb01c", [(1, 2, ""), (3, 4, "fi")])
    >>> text
    'abfic'
    >>> offsets.span_to_original(2, 4)  # "fi" in the view is the one ligature character
    (3, 4)
    >>> offsets.to_view(3)
    2
    """

    __slots__ = ("_orig_end", "_orig_start", "_view_end", "_view_start")

    def __init__(self) -> None:
        self._view_start: list[int] = []
        self._view_end: list[int] = []
        self._orig_start: list[int] = []
        self._orig_end: list[int] = []

    def _add(self, view_start: int, view_end: int, orig_start: int, orig_end: int) -> None:
        self._view_start.append(view_start)
        self._view_end.append(view_end)
        self._orig_start.append(orig_start)
        self._orig_end.append(orig_end)

    def __bool__(self) -> bool:
        return bool(self._view_start)

    def start_to_original(self, position: int) -> int:
        """A span's start: inside an edit it moves to the edit's start; after deleted text, past it."""
        i = bisect_right(self._view_start, position) - 1
        if i < 0:
            return position
        if position < self._view_end[i]:
            return self._orig_start[i]
        return self._orig_end[i] + position - self._view_end[i]

    def end_to_original(self, position: int) -> int:
        """A span's end: inside (or at the end of) an edit it moves to the edit's end."""
        i = bisect_left(self._view_start, position) - 1
        if i < 0:
            return position
        if position <= self._view_end[i]:
            return self._orig_end[i]
        return self._orig_end[i] + position - self._view_end[i]

    def span_to_original(self, start: int, end: int) -> tuple[int, int]:
        first = self.start_to_original(start)
        return first, max(first, self.end_to_original(end))

    def to_view(self, position: int) -> int:
        """An original position in the view (inside an edit: the edit's start in the view)."""
        i = bisect_right(self._orig_start, position) - 1
        if i < 0:
            return position
        if position < self._orig_end[i]:
            return self._view_start[i]
        return self._view_end[i] + position - self._orig_end[i]


def rewrite(text: str, edits: Iterable[tuple[int, int, str]]) -> tuple[str, OffsetMap]:
    """Apply sorted, non-overlapping edits ``(start, end, replacement)``; return the new text and its map."""
    pieces: list[str] = []
    offsets = OffsetMap()
    cursor = 0
    length = 0  # of the new text so far
    for start, end, replacement in edits:
        pieces.append(text[cursor:start])
        length += start - cursor
        pieces.append(replacement)
        if len(replacement) != end - start:
            offsets._add(length, length + len(replacement), start, end)
        length += len(replacement)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces), offsets
