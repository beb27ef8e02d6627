"""From fingerprint hits to copied spans: hits on one diagonal (same offset between answer and document)
close together form one run of copied words."""

from __future__ import annotations

from collections import defaultdict

import msgspec

from guards.ip.fingerprint import shingle_hashes, words
from guards.ip.index import FingerprintIndex


class Copy(msgspec.Struct, frozen=True):
    start: int  # characters of the answer
    end: int
    document: int
    words: int


def find_copies(text: str, index: FingerprintIndex, min_chars: int) -> list[Copy]:
    """Spans of ``text`` of at least ``min_chars`` characters that reproduce an indexed document."""
    tokens = words(text)
    hits = index.lookup(shingle_hashes(tokens.words, index.k))
    diagonals: dict[tuple[int, int], list[int]] = defaultdict(list)
    for hit in hits:
        diagonals[(hit.document, hit.document_position - hit.query_position)].append(hit.query_position)
    copies = []
    for (document, _), positions in diagonals.items():
        positions.sort()
        run_start = previous = positions[0]
        for position in [*positions[1:], None]:
            # Winnowing keeps a fingerprint at least every w shingles along a shared run.
            if position is not None and position - previous <= index.w:
                previous = position
                continue
            first_word, last_word = run_start, previous + index.k - 1
            start, end = tokens.starts[first_word], tokens.ends[last_word]
            if end - start >= min_chars:
                copies.append(Copy(start, end, document, last_word - first_word + 1))
            if position is not None:
                run_start = previous = position
    return _longest_first(copies)


def _longest_first(copies: list[Copy]) -> list[Copy]:
    """One copy per stretch of the answer: the longest (a text may be in several documents)."""
    kept: list[Copy] = []
    for copy in sorted(copies, key=lambda c: -(c.end - c.start)):
        if all(copy.end <= other.start or copy.start >= other.end for other in kept):
            kept.append(copy)
    return sorted(kept, key=lambda c: c.start)
