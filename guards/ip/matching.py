"""From fingerprint hits to copied spans. Each hit is verified and extended word by word against the
document's stored word codes, so a reported span is the whole shared run (winnowing alone would lose
up to a window at each end) and a hash collision reports nothing."""

from __future__ import annotations

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
    answer = word_codes(hashes)
    covered: set[tuple[int, int]] = set()  # (document, diagonal offset) runs already extended
    copies: list[Copy] = []
    for hit in sorted(hits, key=lambda h: h.query_position):
        diagonal = hit.document_position - hit.query_position
        key = (hit.document, diagonal)
        document = index.document_codes(hit.document)
        first, last = _extend(answer, document, hit.query_position, diagonal)
        if last < first:
            continue  # a collision: the words differ
        if key in covered and any(
            c.document == hit.document and c.start <= tokens.starts[first] < c.end for c in copies
        ):
            continue
        covered.add(key)
        start, end = tokens.starts[first], tokens.ends[last]
        if end - start >= min_chars:
            copies.append(Copy(start, end, hit.document, last - first + 1))
    return _longest_first(copies)


def _extend(answer: object, document: object, position: int, diagonal: int) -> tuple[int, int]:
    """The maximal run of equal words around ``position`` on this diagonal, as (first, last) word."""
    a = answer  # numpy uint16 arrays; plain indexing keeps this loop short
    d = document
    size_a, size_d = len(a), len(d)  # type: ignore[arg-type]
    if not (0 <= position + diagonal < size_d) or a[position] != d[position + diagonal]:  # type: ignore[index]
        return position, position - 1
    first = position
    while first > 0 and first + diagonal > 0 and a[first - 1] == d[first - 1 + diagonal]:  # type: ignore[index]
        first -= 1
    last = position
    while last + 1 < size_a and last + 1 + diagonal < size_d and a[last + 1] == d[last + 1 + diagonal]:  # type: ignore[index]
        last += 1
    return first, last


def _longest_first(copies: list[Copy]) -> list[Copy]:
    """One copy per stretch of the answer: the longest (a text may be in several documents)."""
    kept: list[Copy] = []
    for copy in sorted(copies, key=lambda c: -(c.end - c.start)):
        if all(copy.end <= other.start or copy.start >= other.end for other in kept):
            kept.append(copy)
    return sorted(kept, key=lambda c: c.start)
