"""Sentences, citation markers, and the lexical signals the embedded scorer uses. Pure functions."""

from __future__ import annotations

import re

import msgspec

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_MARKER = re.compile(r"\[([^\[\]\s][^\[\]]{0,80})\]")
_URL = re.compile(r"https?://[^\s)\]>\"']+")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?%?")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d[\d,.]*%?")
_NEGATIONS = frozenset({"not", "no", "never", "none", "neither", "nor", "cannot", "without", "n't"})
_STOPWORDS = frozenset(
    (
        "a an the and or but if of to in on at by for with from as is are was were be been being it its this "
        "that these those there their they them he she his her we our you your i me my which who whom whose "
        "what when where why how than then so such into over under about after before also can could would "
        "should may might will shall do does did has have had more most less least very just only any some "
        "each every all both per via"
    ).split()
)


class Sentence(msgspec.Struct, frozen=True):
    start: int
    end: int
    text: str


def sentences(text: str) -> list[Sentence]:
    """Split into sentences with their offsets.

    >>> [s.text for s in sentences("It rained. Then it stopped! Pi is 3.14 [1].")]
    ['It rained.', 'Then it stopped!', 'Pi is 3.14 [1].']
    """
    found: list[Sentence] = []
    cursor = 0
    for match in [*_SENTENCE_END.finditer(text), None]:
        end = match.start() if match else len(text)
        piece = text[cursor:end]
        stripped = piece.strip()
        if stripped:
            offset = cursor + piece.index(stripped[0])
            found.append(Sentence(offset, offset + len(stripped), stripped))
        if match:
            cursor = match.end()
    return found


def citation_markers(text: str) -> list[str]:
    """``[1]``, ``[doc-id]`` and URLs cited in a sentence.

    >>> citation_markers("Sales rose 4% [2][doc-q3] (see https://example.org/q3).")
    ['2', 'doc-q3', 'https://example.org/q3']
    """
    markers = [m.group(1).strip() for m in _MARKER.finditer(text)]
    markers += [url.rstrip(".,;") for url in _URL.findall(text)]
    return markers


def without_markers(text: str) -> str:
    """The sentence with its citation markers removed.

    >>> without_markers("Sales rose [2] (https://x.org/a).")
    'Sales rose.'
    """
    text = _MARKER.sub("", _URL.sub("", text))
    text = re.sub(r"\(\s*\)", "", text)
    return re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()


def numbers(text: str) -> set[str]:
    """Numbers, normalised: thousands separators dropped, trailing zeros of decimals too.

    >>> sorted(numbers("It cost $1,200.50 in 2019, up 12% from 3.0"))
    ['12%', '1200.5', '2019', '3']
    """
    found = set()
    for raw in _NUMBER.findall(text):
        percent = raw.endswith("%")
        value = raw.rstrip("%").replace(",", "").lstrip("+")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        found.add(value + ("%" if percent else ""))
    return found


def entities(text: str) -> set[str]:
    """Capitalised words that do not start a sentence: a cheap stand-in for names.

    >>> sorted(entities("The plant in Lyon was sold to Acme Corp in June. It closed."))
    ['acme', 'corp', 'june', 'lyon']
    """
    found = set()
    for sentence in sentences(text) or [Sentence(0, len(text), text)]:
        words = _WORD.findall(sentence.text)
        for index, word in enumerate(words):
            name = word.lower().removesuffix("'s")
            if index and word[0].isupper() and name not in _STOPWORDS:
                found.add(name)
    return found


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    """Lower-cased, crudely stemmed words that carry meaning.

    >>> sorted(content_words("The engines were running smoothly."))
    ['engin', 'runn', 'smooth']
    """
    return {
        _stem(w.lower()) for w in _WORD.findall(text) if w.lower() not in _STOPWORDS and not w[0].isdigit()
    }


def coverage(claim: str, evidence: str) -> float:
    """Share of the claim's content words found in the evidence.

    >>> coverage("The bridge opened in spring", "In spring the new bridge opened to traffic")
    1.0
    """
    words = content_words(claim)
    return len(words & content_words(evidence)) / len(words) if words else 1.0


def negated(text: str) -> bool:
    """Whether the sentence says no.

    >>> negated("The museum does not open on Mondays."), negated("The museum opens daily.")
    (True, False)
    """
    lowered = text.lower().replace("n't", " n't")
    return any(word in _NEGATIONS for word in re.findall(r"[a-z']+", lowered))
