"""From fingerprint hits to copied spans. Each hit is verified and extended word by word against the
document's stored word codes, so a reported span is the whole shared run (winnowing alone would lose
up to a window at each end) and a hash collision reports nothing."""

from __future__ import annotations

from typing import Any

import msgspec

from guards.ip.fingerprint import shingle_hashes, word_codes, word_hashes, words
from guards.ip.index import FingerprintIndex


class Copy(msgspec.Struct, frozen=True):
    start: int  # characters of the answer
    end: int
    document: int
    words: int


def find_copies(text: str, index: FingerprintIndex, min_chars: int) -> list[Copy]:
    """Spans of ``text`` of at least ``min_chars`` characters that reproduce an indexed document."""
    tokens = words(text)
    hashes = word_hashes(tokens.words)
    hits = index.lookup(shingle_hashes(hashes, index.k))
    if not hits:
        return []
    answer = word_codes(hashes).tolist()
    runs: dict[tuple[int, int], int] = {}  # (document, diagonal) → last word of the run found so far
    copies: list[Copy] = []
    for hit in sorted(hits, key=lambda h: h.query_position):
        diagonal = hit.document_position - hit.query_position
        key = (hit.document, diagonal)
        if runs.get(key, -1) >= hit.query_position:
            continue  # inside a run already extended
        first, last = _extend(answer, index.document_codes(hit.document), hit.query_position, diagonal)
        if last < first:
            continue  # a collision: the words differ
        runs[key] = last
        start, end = tokens.starts[first], tokens.ends[last]
        if end - start >= min_chars:
            copies.append(Copy(start, end, hit.document, last - first + 1))
    return _longest_first(copies)


def _extend(answer: list[int], document: Any, position: int, diagonal: int) -> tuple[int, int]:
    """The maximal run of equal words around ``position`` on this diagonal, as (first, last) word."""
    size_a, size_d = len(answer), len(document)
    if not 0 <= position + diagonal < size_d or answer[position] != document[position + diagonal]:
        return position, position - 1
    first = position
    while first > 0 and first + diagonal > 0 and answer[first - 1] == document[first - 1 + diagonal]:
        first -= 1
    last = position
    while (
        last + 1 < size_a
        and last + 1 + diagonal < size_d
        and answer[last + 1] == document[last + 1 + diagonal]
    ):
        last += 1
    return first, last


def _longest_first(copies: list[Copy]) -> list[Copy]:
    """One copy per stretch of the answer: the longest (a text may be in several documents)."""
    kept: list[Copy] = []
    for copy in sorted(copies, key=lambda c: -(c.end - c.start)):
        if all(copy.end <= other.start or copy.start >= other.end for other in kept):
            kept.append(copy)
    return sorted(kept, key=lambda c: c.start)
