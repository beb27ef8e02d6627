"""Numbered placeholders for one request's personal data, and putting the values back in its answer.

Where an input rule with ``restore: true`` redacts a value to its entity placeholder (``<PERSON>``), the
value gets a numbered one instead (``<PERSON_1>``): the same value the same number in every text of the
request, another value another number, skipping numbers the request already spells out itself. The
upstream, the recorder and the logs see only placeholders; the client's copy of the answer gets the
values back (``restore_choices``, and ``Restorer`` for streams, where a placeholder may be split across
chunks).

The mapping (``Pseudonyms``) lives in memory for one request, and no ``repr`` of it shows a value.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from gateway.guarded.text_slots import Slot, drop_logprobs
from guards.pipeline import StageOutcome
from guards.policy import Rule
from guards.redaction import apply_spans, merge_overlapping
from guards.verdict import Span

# Anything that looks like a placeholder a client wrote itself; bounded, so it is linear in the text.
_WRITTEN = re.compile(r"<[^<>\s]{1,120}>")


class Pseudonyms:
    """One request's placeholders and the values they stand for."""

    __slots__ = ("_by_value", "_counts", "_pattern", "_sorted", "_taken", "_values")

    def __init__(self, taken: frozenset[str] = frozenset()) -> None:
        self._taken = taken  # placeholders the request spells out itself: never handed out
        self._values: dict[str, str] = {}  # placeholder → value
        self._by_value: dict[tuple[str, str], str] = {}  # (label, value) → placeholder
        self._counts: dict[str, int] = {}
        self._pattern: re.Pattern[str] | None = None
        self._sorted: list[str] = []

    def __repr__(self) -> str:
        return f"Pseudonyms({len(self._values)} placeholders)"

    def __len__(self) -> int:
        return len(self._values)

    def placeholder(self, label: str, value: str) -> str:
        """The placeholder for ``value`` as a ``label``: the one it already has, or the next free one."""
        known = self._by_value.get((label, value))
        if known is not None:
            return known
        number = self._counts.get(label, 0)
        while True:
            number += 1
            placeholder = f"<{label}_{number}>"
            if placeholder not in self._taken:
                break
        self._counts[label] = number
        self._by_value[label, value] = placeholder
        self._values[placeholder] = value
        self._pattern = None
        return placeholder

    @property
    def longest(self) -> int:
        return max(map(len, self._values), default=0)

    def restore(self, text: str) -> str:
        """``text`` with every known placeholder replaced by its value; unknown ones stay.

        >>> names = Pseudonyms()
        >>> names.placeholder("PERSON", "Ann Lee")
        '<PERSON_1>'
        >>> names.restore("Dear <PERSON_1>, not <PERSON_2>.")
        'Dear Ann Lee, not <PERSON_2>.'
        """
        if not self._values or "<" not in text:
            return text
        values = self._values
        return self._compiled().sub(lambda match: values.get(match.group(0), match.group(0)), text)

    def could_become(self, fragment: str) -> bool:
        """Whether ``fragment`` is the start (not the whole) of a known placeholder."""
        self._compiled()
        at = bisect.bisect_left(self._sorted, fragment)
        return (
            at < len(self._sorted) and self._sorted[at].startswith(fragment) and self._sorted[at] != fragment
        )

    def _compiled(self) -> re.Pattern[str]:
        if self._pattern is None:
            # Anything shaped like a placeholder, looked up: linear in the text, however many there are.
            self._pattern = re.compile(f"<[^<>]{{1,{max(1, self.longest - 2)}}}>")
            self._sorted = sorted(self._values)
        return self._pattern


class Restorer:
    """Restores one streamed text as it arrives: complete placeholders go out as their values, and a
    tail that may still become one is held until the next text (or ``flush``) says what it is.

    >>> names = Pseudonyms()
    >>> _ = names.placeholder("PERSON", "Ann Lee")
    >>> restorer = Restorer(names)
    >>> [restorer.feed("Dear <PER"), restorer.feed("SON_1>, hi <"), restorer.feed("3"), restorer.flush()]
    ['Dear ', 'Ann Lee, hi ', '<3', '']
    """

    def __init__(self, pseudonyms: Pseudonyms) -> None:
        self._pseudonyms = pseudonyms
        self._longest = pseudonyms.longest
        self._held = ""

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def feed(self, text: str) -> str:
        text = self._held + text
        # Only the last "<" can start an unfinished placeholder: none holds a "<" after its first.
        start = text.rfind("<", max(0, len(text) - self._longest + 1))
        if start >= 0 and self._pseudonyms.could_become(text[start:]):
            text, self._held = text[:start], text[start:]
        else:
            self._held = ""
        return self._pseudonyms.restore(text)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


def pseudonymise(
    originals: Sequence[str], outcome: StageOutcome, rules: Sequence[Rule]
) -> tuple[list[str], Pseudonyms]:
    """Each input text as the upstream may read it, with numbered placeholders where a rule that restores
    redacted a value to its entity placeholder; other redactions as the pipeline made them.

    Overlapping redactions merge as in the pipeline (``guards.redaction``); a merged span is numbered
    only when every redaction in it is such a placeholder of a restoring rule.
    """
    pseudonyms = Pseudonyms(frozenset(m.group(0) for text in originals for m in _WRITTEN.finditer(text)))
    texts = []
    for index, (original, judged) in enumerate(zip(originals, outcome.texts, strict=True)):
        if judged.decision != "redact":
            texts.append(judged.text)
            continue
        spans: list[Span] = []
        fixed: set[Span] = set()  # redactions that stay as they are
        for rule, result in zip(rules, outcome.results, strict=True):
            found = [s for s in result.redaction_spans(index) if s.replacement is not None]
            spans += found
            fixed.update(s for s in found if not (rule.restore and s.replacement == f"<{s.label}>"))
        texts.append(apply_spans(original, _numbered(original, spans, fixed, pseudonyms)))
    return texts, pseudonyms


def _numbered(original: str, spans: list[Span], fixed: set[Span], pseudonyms: Pseudonyms) -> list[Span]:
    """The merged redactions of one text, each numbered unless a redaction in it stays as it is."""
    ordered = sorted(spans, key=lambda s: s.start)
    numbered = []
    cursor = 0
    for span in merge_overlapping(spans):  # in order, disjoint: each holds the spans starting in it
        keep = False
        while cursor < len(ordered) and ordered[cursor].start < span.end:
            keep = keep or ordered[cursor] in fixed
            cursor += 1
        if not keep:
            value = original[span.start : span.end]
            span = msgspec.structs.replace(span, replacement=pseudonyms.placeholder(span.label, value))
        numbered.append(span)
    return numbered


def restore_choices(
    choices: list[dict[str, Any]], slots_of: Callable[[dict[str, Any]], list[Slot]], pseudonyms: Pseudonyms
) -> None:
    """The values back in every text of whole answers' choices (a client's copy: changed in place).
    Names that must stay identifiers stay as they are; a choice whose text changed loses its logprobs,
    which spell the placeholders."""
    for choice in choices:
        for slot in slots_of(choice):
            if slot.identifier:
                continue
            restored = pseudonyms.restore(slot.text)
            if restored != slot.text:
                slot.write(restored)
                drop_logprobs(choice)
