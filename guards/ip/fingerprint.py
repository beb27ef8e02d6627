"""Fingerprints of text that survive whitespace, case and punctuation changes.

Text is normalised to lower-case words (anything but letters and digits separates words). Each run of
``k`` consecutive words (a shingle) gets a 32-bit hash, computed for all shingles at once with numpy.
Winnowing keeps, in every window of ``w`` consecutive shingles, the smallest hash: any shared run of at
least ``w + k - 1`` words is then guaranteed to share a kept fingerprint, while only about ``2 / (w + 1)``
of the shingles are stored. Work is linear in the text's length.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import msgspec
import numpy as np

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_BASE = np.uint64(1_000_003)


class Words(msgspec.Struct):
    """Normalised words and where each sits in the original text."""

    words: list[str]
    starts: list[int]
    ends: list[int]


def words(text: str) -> Words:
    """Lower-cased words with their offsets.

    >>> words("Hello,   WORLD!").words
    ['hello', 'world']
    """
    found = list(_WORD.finditer(text))
    return Words([m.group().lower() for m in found], [m.start() for m in found], [m.end() for m in found])


def word_hashes(tokens: list[str]) -> Any:
    """A 32-bit hash per word (CRC-32: stable across processes and machines)."""
    return np.fromiter((zlib.crc32(t.encode()) for t in tokens), dtype=np.uint64, count=len(tokens))


def word_codes(hashes: Any) -> Any:
    """16 bits a word: what the index keeps to verify and extend a match word by word."""
    return (hashes & np.uint64(0xFFFF)).astype(np.uint16)


def shingle_hashes(hashes: Any, k: int) -> Any:
    """One 32-bit hash per run of ``k`` words, from the words' hashes (a polynomial hash in 64-bit
    arithmetic, which wraps, keeping its high half). A rare collision only costs a verification."""
    if len(hashes) < k:
        return np.zeros(0, dtype=np.uint32)
    mixed = hashes * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1)
    count = len(hashes) - k + 1
    shingles = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(k):
            shingles = shingles * _BASE + mixed[offset : offset + count]
    return (shingles >> np.uint64(32)).astype(np.uint32)


def winnow(hashes: Any, w: int) -> Any:
    """Positions of the fingerprints winnowing keeps: the minimum of each window of ``w`` hashes.

    >>> winnow(np.array([5, 3, 8, 1, 9, 7, 2], dtype=np.uint32), 3).tolist()
    [1, 3, 6]
    """
    if len(hashes) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(hashes) <= w:
        return np.array([int(np.argmin(hashes))], dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(hashes, w)
    minima = np.argmin(windows, axis=1) + np.arange(len(windows))
    return np.unique(minima)
