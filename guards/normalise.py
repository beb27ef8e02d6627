"""What guards read: the text as sent, rewritten so that obfuscation does not hide what it says.

Three views, each a rewrite of the one before, each with an offset map back to the original text (what
a guard reports, and what redaction rewrites, is always a range of the text the client sent):

- ``raw``: the text as sent.
- ``canonical``: invisible characters removed (zero-width, bidi and other format characters, control
  characters, variation selectors, Hangul fillers), then NFKC (fullwidth forms, ligatures, mathematical
  and circled letters become plain ones). Meaning is unchanged, so every guard reads at least this: PII,
  IP and grounding match patterns and words that an invisible character would otherwise split.
- ``deobfuscated``: canonical, then combining marks dropped from Latin letters (accents, strike-through,
  "Zalgo"), Cyrillic and Greek look-alikes folded to Latin in words that mix scripts or are made only
  of look-alikes, spaced or dotted single letters joined (``f u c k``, ``f.u.c.k``), and leetspeak read
  (``sh1t``, ``a$$``) in words that also hold letters. This loses information (accents, the digits of
  "l33t"), so only classifiers that judge meaning read it: the toxicity guard. Numbers, e-mail addresses
  and names must stay as sent for PII, hence the two levels.

Every step is one regular-expression pass that cannot backtrack beyond a word or a run of separators,
plus Python work only where something changes: linear in the text's length. A pure-ASCII text with no
control characters is its own canonical view at the cost of two scans in C.

Not handled: right-to-left overrides that reorder what is displayed, look-alikes from other scripts
than Cyrillic and Greek (beyond a few Latin ones), and letters masked with ``*``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Iterator
from enum import StrEnum
from functools import cache, partial

from guards.offsets import OffsetMap, rewrite


class TextView(StrEnum):
    RAW = "raw"
    CANONICAL = "canonical"
    DEOBFUSCATED = "deobfuscated"


class Normalised:
    """A view of a text and the way back to it.

    >>> view = normalise("Mail b\\u200bob@x.io", TextView.CANONICAL)
    >>> view.text
    'Mail bob@x.io'
    >>> view.span_to_original(5, 13)
    (5, 14)
    """

    __slots__ = ("_maps", "text")

    def __init__(self, text: str, maps: tuple[OffsetMap, ...] = ()) -> None:
        self.text = text
        self._maps = maps

    @property
    def identity(self) -> bool:
        """Positions in the view are positions in the original."""
        return not self._maps

    def span_to_original(self, start: int, end: int) -> tuple[int, int]:
        for offsets in reversed(self._maps):
            start, end = offsets.span_to_original(start, end)
        return start, end

    def to_view(self, position: int) -> int:
        for offsets in self._maps:
            position = offsets.to_view(position)
        return position

    def then(self, text: str, offsets: OffsetMap) -> Normalised:
        return Normalised(text, (*self._maps, offsets) if offsets else self._maps)


def normalise(text: str, view: TextView) -> Normalised:
    """One view of ``text``.

    >>> normalise("You are a f.u.c.k.i.n.g id\\u200b1ot", TextView.DEOBFUSCATED).text
    'You are a fucking idiot'
    >>> normalise("Crème brûlée at l33t café, 2024", TextView.DEOBFUSCATED).text
    'Creme brulee at leet cafe, 2024'
    """
    return views(text, {view})[view]


def views(text: str, wanted: Collection[TextView]) -> dict[TextView, Normalised]:
    """The views asked for, each computed once (the deobfuscated view starts from the canonical one)."""
    found = {TextView.RAW: Normalised(text)}
    if TextView.CANONICAL in wanted or TextView.DEOBFUSCATED in wanted:
        found[TextView.CANONICAL] = canonical = _canonical(text)
        if TextView.DEOBFUSCATED in wanted:
            found[TextView.DEOBFUSCATED] = _deobfuscated(canonical)
    return {view: found[view] for view in wanted}


def _canonical(text: str) -> Normalised:
    view = Normalised(text)
    view = _step(view, _patterns().invisible, _delete)
    if not view.text.isascii():  # ASCII is already NFKC
        view = _step(view, _patterns().non_ascii_run, _nfkc_clusters)
    return view


def _deobfuscated(view: Normalised) -> Normalised:
    if not view.text.isascii():
        view = _step(view, _patterns().marks, _strip_marks)
        # Words that mix scripts are folded. So are words made only of look-alikes, unless the text also
        # holds genuine Cyrillic or Greek letters: then they are likely real words ("как", "всё").
        fold_all = _patterns().genuine_letter.search(view.text) is None
        view = _step(view, _patterns().confusable_word, partial(_fold_confusables, fold_all))
    view = _step(view, _patterns().spaced_letters, _join_letters)
    return _step(view, _patterns().leet_word, _read_leet)


# --- steps: each yields edits (start, end, replacement) for one match -----------------------------

_Edits = Iterator[tuple[int, int, str]]
_Edit = Callable[[str, re.Match[str]], _Edits]


def _step(view: Normalised, pattern: re.Pattern[str], edit: _Edit) -> Normalised:
    text = view.text
    edits = [e for match in pattern.finditer(text) for e in edit(text, match)]
    if not edits:
        return view
    return view.then(*rewrite(text, edits))


def _delete(text: str, match: re.Match[str]) -> _Edits:
    yield match.start(), match.end(), ""


def _nfkc_clusters(text: str, match: re.Match[str]) -> _Edits:
    run = match.group()
    if unicodedata.is_normalized("NFKC", run):
        return
    # Each base character with its combining marks is normalised on its own, so that a span inside the
    # run maps back to the characters it came from rather than to the whole run. Neighbours that keep
    # their length (fullwidth letters, say) make one edit: their positions do not move.
    start = match.start()
    kept: list[str] = []
    kept_from = cluster_start = 0
    for i in range(1, len(run) + 1):
        if i < len(run) and unicodedata.combining(run[i]):
            continue
        cluster = run[cluster_start:i]
        folded = unicodedata.normalize("NFKC", cluster)
        if len(folded) == len(cluster):
            kept.append(folded)
        else:
            if kept:
                yield start + kept_from, start + cluster_start, "".join(kept)
            yield start + cluster_start, start + i, folded
            kept, kept_from = [], i
        cluster_start = i
    if kept:
        yield start + kept_from, start + len(run), "".join(kept)


def _strip_marks(text: str, match: re.Match[str]) -> _Edits:
    kept = "".join(c for c in unicodedata.normalize("NFD", match.group()) if not unicodedata.combining(c))
    if kept != match.group():
        yield match.start(), match.end(), kept


def _fold_confusables(fold_all: bool, text: str, match: re.Match[str]) -> _Edits:
    word = match.group()
    if fold_all or any(c.isascii() and c.isalpha() for c in word):
        yield match.start(), match.end(), word.translate(_patterns().confusables)


def _join_letters(text: str, match: re.Match[str]) -> _Edits:
    separator = len(match.group(1))
    letters = (match.end() - match.start() + separator) // (separator + 1)
    first = match.start() + 1
    if letters > 3 and match.group(1) == " " and match.group()[0] in "aAI":
        first += 2  # "a f u c k": the article stays a word of its own
    for start in range(first, match.end(), separator + 1):
        yield start, start + separator, ""


def _read_leet(text: str, match: re.Match[str]) -> _Edits:
    word = match.group()
    core = word.strip("!|")  # "idiot!" ends a sentence; only inner ones stand for letters
    if not any(c.isalpha() for c in core) and _patterns().number.fullmatch(core):
        return  # a number, a price, a version: nothing to read
    lead = len(word) - len(word.lstrip("!|"))
    read = core.translate(_LEET_UPPER if core.isupper() else _LEET)  # B4D reads BAD, b4d bad
    if read != core:
        yield match.start() + lead, match.start() + lead + len(core), read


# --- tables and patterns, built on first use ---------------------------------------------------

_LEET = str.maketrans("013457@$!|", "oieastasil")
_LEET_UPPER = str.maketrans("013457@$!|", "OIEASTASIL")

# Cyrillic and Greek letters that render like Latin ones, and a few Latin variants NFKC keeps.
_CONFUSABLES = (
    "аaвBеeёeіiјjкkоoрpсcуyхxѕsһhӏlԁdԛqԝwүy"  # noqa: RUF001
    "АAВBЕEЁEЅSІIЈJКKМMНHОOРPСCТTХXУYҮY"  # noqa: RUF001
    "αaοoρpνvυuιiκkχxεeγyϲcϳj"  # noqa: RUF001
    "ΑAΒBΕEΖZΗHΙIΚKΜMΝNΟOΡPΤTΥYΧX"  # noqa: RUF001
    "ıiȷjɑaɡgօoսuհh"  # noqa: RUF001
)


class _Patterns:
    def __init__(self) -> None:
        invisible = (
            "\x00-\x08\x0e-\x1f\x7f-\x9f"  # control characters, but not tab and line breaks
            "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
            "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb"
            "\U000110bd\U000110cd\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
            "\U000e0000-\U000e0fff"  # tags and variation selectors supplement
            "\u0600-\u0605\u06dd\u070f\u0890\u0891\u08e2\U00013430-\U0001343f"
        )
        self.invisible = re.compile(f"[{invisible}]+")
        # A non-ASCII run, with the character before it (an ASCII base its combining marks belong to).
        self.non_ascii_run = re.compile(r"[\x00-\x7f]?[^\x00-\x7f]+")
        # Runs of generic combining marks (any base), and precomposed accented Latin letters.
        marks = "\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
        self.marks = re.compile(f"[{marks}]+|[\u00c0-\u024f\u1e00-\u1eff]")
        self.confusables: dict[int, str] = {
            ord(_CONFUSABLES[i]): _CONFUSABLES[i + 1] for i in range(0, len(_CONFUSABLES), 2)
        }
        look_alikes = re.escape("".join(chr(c) for c in self.confusables))
        # A whole word (letters, digits) that holds a look-alike. The lazy look-ahead stops at the
        # word's end, so each word is scanned at most twice.
        self.confusable_word = re.compile(rf"(?<![^\W_])(?=[^\W_]*?[{look_alikes}])[^\W_]+")
        self.genuine_letter = re.compile(rf"(?![{look_alikes}])[\u0370-\u03ff\u0400-\u052f]")
        # Three or more single letters (or digits), each alone, between copies of one separator:
        # f u c k, f.u.c.k, f - u - c - k.
        # Letters include the symbols leetspeak uses for them ($.h.1.7).
        letter, edge = r"(?:[^\W_]|[@$])", r"(?![^\W_])(?![@$])"
        self.spaced_letters = re.compile(
            rf"(?<![^\W_])(?<![@$]){letter}([ \t.\-_*·•|/\\,+~:]{{1,3}}){letter}{edge}(?:\1{letter}{edge})+"
        )
        # A word of letters, digits and the symbols leetspeak uses, holding at least one such digit
        # or symbol.
        self.leet_word = re.compile(r"(?<![\w@$!|])(?=[\w@$!|]*?[013457@$!|])[\w@$!|]+")
        self.number = re.compile(r"[$]?\d+(?:[.,]\d+)*[$]?")


@cache
def _patterns() -> _Patterns:
    return _Patterns()
