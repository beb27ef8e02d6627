"""Cutting a growing text into windows for streaming guards, in time linear in its length.

A window ends at a sentence end once it holds ``min_chars``, or is forced at ``max_chars``. Each
window is checked together with ``overlap_chars`` of the text before it (``context``), so what crosses
a boundary is seen whole. At a forced cut, only the part before the last ``overlap_chars`` is released;
the rest is checked again with the next window, so a name or number split by the cut is never released
half-checked. Every character is scanned once for boundaries and checked at most twice.
"""

from __future__ import annotations

import msgspec

_TERMINATORS = frozenset(".!?\n")


class Window(msgspec.Struct, frozen=True):
    context: str  # already released; for the guard's eyes only
    text: str  # to check
    release: int  # how much of ``text`` may go out once it passed (the rest comes back next window)
    final: bool = False

    @property
    def checked(self) -> str:
        return self.context + self.text


class WindowCutter:
    def __init__(self, min_chars: int = 24, max_chars: int = 400, overlap_chars: int = 64) -> None:
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.overlap_chars = overlap_chars
        self._pending = ""  # received, not yet released
        self._scanned = 0  # how far into _pending sentence ends were looked for
        self._boundary = 0  # the last sentence end found in _pending (0: none yet)
        self._tail = ""  # the last overlap_chars of released text

    def append(self, delta: str) -> None:
        self._pending += delta

    @property
    def pending_chars(self) -> int:
        """Received and not yet released."""
        return len(self._pending)

    def next_window(self, *, final: bool = False) -> Window | None:
        """The next window ready to check, or None. ``final``: the stream ended, so the rest is one window
        (always checked, never dropped). Call ``commit`` before asking again."""
        if final:
            if not self._pending:
                return None
            return Window(self._tail, self._pending, len(self._pending), final=True)
        return self._next_window()

    def commit(self, window: Window, released: int) -> None:
        """``released`` characters of the window's text went out; the rest stays pending."""
        if not 0 < released <= len(window.text) and window.text:
            raise ValueError(f"released must be in 1..{len(window.text)}, not {released}")
        out = window.text[:released]
        self._tail = (self._tail + out)[-self.overlap_chars :] if self.overlap_chars else ""
        self._pending = self._pending[released:]
        self._scanned = 0
        self._boundary = 0

    def _next_window(self) -> Window | None:
        self._scan()
        if self._boundary >= self.min_chars:
            return Window(self._tail, self._pending[: self._boundary], self._boundary)
        if len(self._pending) >= self.max_chars:
            text = self._pending[: self.max_chars]
            keep_from = max(1, self.max_chars - self.overlap_chars)
            space = text.rfind(" ", 0, keep_from + 1)
            return Window(self._tail, text, space + 1 if space > 0 else keep_from)
        return None

    def _scan(self) -> None:
        # A terminator counts once the character after it is known to be whitespace ("3.14" is not an end).
        pending = self._pending
        limit = min(len(pending) - 1, self.max_chars - 1)
        for index in range(self._scanned, max(self._scanned, limit)):
            if pending[index] in _TERMINATORS and pending[index + 1].isspace():
                self._boundary = index + 2
        self._scanned = max(self._scanned, limit)
