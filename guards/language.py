"""Which sentences of a text are clearly not in a language a model covers.

An English NER model reads French as English and finds "names" in it ("Bonne chance" is a PERSON to
spaCy's small English pipeline). So before its guesses count, the sentence around each one is judged:
is it clearly in another language?

The judge is ``langdetect`` (Apache-2.0, a pure-Python port of Google's language-detection: character
n-gram profiles of 55 languages that ship inside the package, so nothing is downloaded; a seeded
detector of our own, so it is deterministic). It was chosen over fastText's identifier (a native
extension, and a model under CC-BY-SA) and over a hand-written stop-word list (which would know only
the languages someone listed). Two things keep it from misjudging English:

- It judges a sentence **without the spans the guard found**: a name alone says nothing of the
  language around it ("Angela Merkel." is Indonesian to it, with 0.99), so too little text left
  (under ``MIN_LETTERS``) means the whole text's context is judged instead, and if that is too short
  too, the text counts as covered.
- For English, a sentence holding a common English function word is covered whatever the detector
  says (the words below are not words of French, Spanish, German, Italian or Portuguese).

"Clearly" means: the covered languages together get less than ``COVERED_BELOW`` of the probability.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any

MIN_LETTERS = 12
COVERED_BELOW = 0.1

# A sentence ends at . ! ? (not after an initial or a common abbreviation: "F. Scott", "Dr. Who")
# or at a line break, also one written as the two characters \n (JSON-escaped text, tool-call arguments).
_SENTENCE_END = re.compile(
    r"(?<!\b[A-Z])(?<!\bDr)(?<!\bMr)(?<!\bMs)(?<!\bSt)(?<!\bMrs)(?<!\bApt)"
    r"(?<!\bJr)(?<!\bSr)(?<!\bNo)(?<!\bvs)[.!?\u3002\uff01\uff1f]+|\n|\\n"
)
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")

# Common English words that are not words of French, Spanish, German, Italian or Portuguese ("was",
# "will", "also" and "man" are German, "no" and "come" Spanish or Italian, "place" and "but" French,
# "as" and "do" Portuguese: left out), nor international ("email", "info", "okay").
_MARKERS = {
    "en": frozenset(
        """the and of is are were with that this these those which who whom whose you your yours he she
        his him they their them we our us it its for from by at to have has had been be being not what
        when where how why my mine myself yourself would could should shall must may might can't don't
        won't isn't i'm i've i'll you're it's there here then than very just only about after before
        because while into over under again never always often sometimes every each any some more
        other such same own both few many much people time year day way thing woman child world life
        week number group fact said says say call called know think make made take get got give gave
        seen came went gone want look use used find found tell told ask asked work worked seem feel try
        leave put mean keep let begin show hear play run move live believe bring happen write wrote
        written born died won became become known address phone office street city country account
        card please thanks thank hello hi dear sincerely regards yes remember forget apt""".split()
    )
}


class LanguageJudge:
    """Says which sentences of a text are clearly in none of ``covered`` (ISO 639-1 codes).

    Not thread-safe: use it from one thread (the guard's runner thread).
    """

    def __init__(self, covered: Collection[str]) -> None:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

        self.covered = frozenset(covered)
        self._markers = frozenset().union(*(_MARKERS.get(code, frozenset()) for code in self.covered))
        self._factory: Any = DetectorFactory()  # our own, not langdetect's global one
        self._factory.load_profile(PROFILES_DIRECTORY)
        self._factory.set_seed(0)

    def foreign_ranges(
        self, text: str, guesses: Sequence[tuple[int, int]], patterns: Sequence[tuple[int, int]] = ()
    ) -> list[tuple[int, int]]:
        """The sentences of ``text`` (start, end) clearly not in a covered language.

        ``guesses`` are the model's spans (a sentence made only of them is not judged alone: a name says
        nothing of the language around it); ``patterns`` (e-mails, numbers) are left out of what is
        judged. A sentence too short to judge alone is judged by the whole text.
        """
        whole: bool | None = None
        ranges = []
        for start, end in sentences(text):
            if self._judgeable(text, start, end, guesses, patterns):
                foreign = self.is_foreign(_without(text, start, end, patterns))
            else:
                if whole is None:
                    whole = self._judgeable(text, 0, len(text), guesses, patterns) and self.is_foreign(
                        _without(text, 0, len(text), patterns)
                    )
                foreign = whole
            if foreign:
                ranges.append((start, end))
        return ranges

    @staticmethod
    def _judgeable(
        text: str,
        start: int,
        end: int,
        guesses: Sequence[tuple[int, int]],
        patterns: Sequence[tuple[int, int]],
    ) -> bool:
        judged = _without(text, start, end, patterns)
        return (
            _letters(judged) >= MIN_LETTERS
            and _letters(_without(judged, 0, len(judged), [(a - start, b - start) for a, b in guesses])) > 0
        )

    def is_foreign(self, text: str) -> bool:
        """Whether ``text`` is clearly in none of the covered languages."""
        from langdetect.lang_detect_exception import LangDetectException

        words = {word.lower() for word in _WORD.findall(text)}
        if words & self._markers:
            return False
        detector = self._factory.create()
        detector.append(text)
        try:
            guesses = detector.get_probabilities()
        except LangDetectException:  # no letters it knows: nothing to go on
            return False
        covered = sum(g.prob for g in guesses if g.lang.split("-")[0] in self.covered)
        return bool(guesses) and covered < COVERED_BELOW


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, its end mark included.

    >>> text = "Dr. Jane F. Smith wrote it. Bonjour!\\nBye"
    >>> [text[a:b] for a, b in sentences(text)]
    ['Dr. Jane F. Smith wrote it.', ' Bonjour!', '\\n', 'Bye']
    """
    found, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        found.append((start, match.end()))
        start = match.end()
    if start < len(text):
        found.append((start, len(text)))
    return found


def _without(text: str, start: int, end: int, found: Sequence[tuple[int, int]]) -> str:
    """``text[start:end]`` with the parts inside ``found`` spans (and escaped line breaks) blanked."""
    chars = list(text[start:end].replace("\\n", "  ").replace("\\t", "  "))
    for span_start, span_end in found:
        for i in range(max(span_start, start), min(span_end, end)):
            chars[i - start] = " "
    return "".join(chars)


def _letters(text: str) -> int:
    return sum(char.isalpha() for char in text)
