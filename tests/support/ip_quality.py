"""The IP guard's labelled set: candidates built deterministically from the indexed texts and from
texts that are not indexed, each labelled by brute-force string search, independent of the index.

The rule (what a verbatim-reproduction guard with ``min_match_chars`` promises): a text is a copy when
it holds a run of whole words of at least ``min_chars`` normalised characters (lower-case words joined
by single spaces) that also occurs in an indexed document. Changing a word every 5-10 words leaves a
copy exactly when some unchanged stretch between two changes still reaches that length; paraphrases
and boilerplate under the length are not copies.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

from guards.ip.corpus import read_corpus
from guards.ip.guard import SAMPLE_CORPUS

LICENCES = Path("/usr/share/common-licenses")
MIN_CHARS = 60
FRAMES = [
    ("Sure, here it is:", "Let me know if you need more."),
    ("The relevant part reads as follows.", "That is the whole clause."),
    ("From memory:", "I may have some details wrong."),
]
STOCK = [
    "all rights reserved",
    "without any warranty",
    "free software",
    "subject to the following conditions",
]
# Words put in place of a copy's words, from another subject than the licences'.
SUBSTITUTES = [
    "harbour", "violet", "quietly", "tractor", "seventeen", "marble", "orchard", "lantern", "gravel",
    "pelican", "saffron", "tundra", "whistle", "cobalt", "meadow", "rusty",
]  # fmt: skip
# Hand-written paraphrases of passages of the indexed texts: the same meaning, no long run of words.
PARAPHRASES = [
    "The GPL is a copyleft licence that is free, meant for software as well as other sorts of works.",
    "Most licences for programs try to stop you sharing and modifying them; the GNU GPL instead aims to "
    "guarantee that each version of a program stays free for everybody who runs it.",
    "Free software is about liberty rather than cost: you may hand out copies, ask money for them if "
    "you like, get the source, modify the program, and reuse parts of it in new free programs.",
    "Whoever passes on copies of such a program, for nothing or for a fee, has to give the people who "
    "get them the same freedoms, access to the source included, and must tell them these terms.",
    "Each contributor gives you a worldwide, permanent, non-exclusive, free and irrevocable copyright "
    "licence to copy the work, build derived works on it, show it in public, sublicense and share it.",
    "Contributors also give you a patent licence covering their contributions, but it ends the day you "
    "sue someone claiming that the work infringes a patent.",
    "Unless the law says otherwise or somebody agreed to it in writing, the licensor supplies the work "
    "as it is, with no warranties or conditions of any sort, stated or implied.",
    "No contributor owes you damages of any kind that arise from this licence or from using the work, "
    "unless the law demands it or they promised so in writing.",
    "Under the Mozilla licence you may combine covered code with files of your own in a bigger work, as "
    "long as the covered files themselves stay under the MPL.",
    "The covered software is supplied as is, and the whole risk about how good it is and how it "
    "performs is yours; if it turns out faulty, you pay for any repair or correction.",
    "As far as the law allows, the program has no warranty: its copyright holders offer it as is, and "
    "all the risk about its quality and performance lies with you.",
    "This routine works out an orbital period in days with Kepler's third law, from the semi-major "
    "axis in astronomical units and the star's mass in solar masses.",
    "Software patents threaten every program all the time, and states ought not to let patents hold "
    "back development on general-purpose computers.",
    "Unchanged copies of the source may be passed on through any medium, so long as each one carries a "
    "suitable copyright notice.",
]


def normal(text: str) -> str:
    """Lower-case words joined by single spaces (what the guard's fingerprints see).

    >>> normal("Hello,   WORLD!")
    'hello world'
    """
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def truly_copied(text: str, corpus: list[str], min_chars: int = MIN_CHARS) -> bool:
    """The label: does the text hold a run of whole words of at least ``min_chars`` normalised
    characters that also occurs, normalised, in a document of ``corpus`` (given normalised)?"""
    tokens = normal(text).split()
    padded = [f" {document} " for document in corpus]
    for start in range(len(tokens)):
        for end in range(start + 1, len(tokens) + 1):
            run = " ".join(tokens[start:end])
            if len(run) >= min_chars:
                if any(f" {run} " in document for document in padded):
                    return True
                break
    return False


def labelled_cases(seed: int = 7) -> list[tuple[str, str, bool]]:
    """(kind, text, copied) for every candidate, in a fixed order."""
    rng = random.Random(seed)
    indexed = [text for _, text in read_corpus(SAMPLE_CORPUS)]
    corpus = [normal(text) for text in indexed]
    others = [(LICENCES / name).read_text() for name in ("BSD", "Artistic", "CC0-1.0")]
    cases: list[tuple[str, str]] = []

    def framed(kind: str, body: str) -> None:
        before, after = rng.choice(FRAMES)
        cases.append((kind, f"{before} {body} {after}"))

    def excerpt(text: str, shortest: int, longest: int) -> list[str]:
        tokens = text.split()
        length = rng.randint(shortest, longest)
        start = rng.randrange(0, max(1, len(tokens) - length))
        return tokens[start : start + length]

    for _ in range(80):  # the original set: cosmetic changes only, and licences that are not indexed
        framed("altered copy", _alter(rng, " ".join(excerpt(rng.choice(indexed), 15, 60))))
        framed("unindexed licence", " ".join(excerpt(rng.choice(others), 15, 60)))
    cases += [("stock phrase", f"The licence says the work comes {p}, as usual.") for p in STOCK]
    for _ in range(60):
        framed("word changed every 5-10", " ".join(_change_words(rng, excerpt(rng.choice(corpus), 30, 70))))
    for text in PARAPHRASES:
        framed("paraphrase", text)
    for kind, fits in (
        ("boilerplate 45-59 chars", lambda n: 45 <= n < MIN_CHARS),
        ("boilerplate 60-75 chars", lambda n: MIN_CHARS <= n <= 75),
    ):
        for _ in range(40):
            framed(kind, _run_of_length(rng, rng.choice(corpus), fits))
    # Winnowing (k=4, w=6) promises to find shared runs of 9 words or more: fewer, longer words can
    # reach min_match_chars and still fall between the kept fingerprints.
    for run in rng.sample(_long_word_runs(corpus), 40):
        framed("60+ chars in 7-8 words", run)
    return [(kind, text, truly_copied(text, corpus)) for kind, text in cases]


def _long_word_runs(corpus: list[str]) -> list[str]:
    """Every shortest run of 7 or 8 words that reaches ``MIN_CHARS``, from each word of each document."""
    found = []
    for document in corpus:
        tokens = document.split()
        for start in range(len(tokens) - 8):
            for length in (7, 8):
                run = " ".join(tokens[start : start + length])
                if len(run) >= MIN_CHARS and len(" ".join(tokens[start : start + length - 1])) < MIN_CHARS:
                    found.append(run)
    return found


def _alter(rng: random.Random, text: str) -> str:
    choice = rng.randrange(4)
    if choice == 1:
        return text.lower()
    if choice == 2:
        return re.sub(r"[.,;:()\"]", "", text)
    if choice == 3:
        return re.sub(r"\s+", lambda _: rng.choice([" ", "  ", "\n"]), text)
    return text


def _change_words(rng: random.Random, tokens: list[str]) -> list[str]:
    """One word replaced every 5-10 words (the gap drawn each time), by a word it is not."""
    changed = list(tokens)
    position = rng.randint(0, 9)
    while position < len(changed):
        changed[position] = rng.choice([w for w in SUBSTITUTES if w != changed[position]])
        position += rng.randint(5, 10)
    return changed


def _run_of_length(rng: random.Random, document: str, fits: Callable[[int], bool]) -> str:
    """A run of whole words of ``document`` from a random place, of a length that ``fits``: of those,
    the closest to ``MIN_CHARS`` (just under it, or just over)."""
    tokens = document.split()
    while True:
        start = rng.randrange(0, len(tokens) - 20)
        runs = [" ".join(tokens[start:end]) for end in range(start + 1, start + 20)]
        fitting = [run for run in runs if fits(len(run))]
        if fitting:
            return min(fitting, key=lambda run: abs(len(run) - MIN_CHARS))
