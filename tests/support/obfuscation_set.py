"""How tests/data/obfuscation_labelled.jsonl was made: toxic phrases obfuscated each way a red team used,
and clean texts (plain, and obfuscated the same ways) that must not be flagged, including legitimate
accents, other scripts, spaced acronyms and digits in names. Regenerate with
``python -m tests.support.obfuscation_set > tests/data/obfuscation_labelled.jsonl``.

In a toxic phrase, the words in [brackets] are the ones an attacker disguises letter by letter
(spaced, dotted, leetspeak); the other ways rewrite the whole text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

TOXIC = [
    "[fuck] you",
    "go [fuck] yourself",
    "shut up you [fucking] [idiot]",
    "you are a stupid [bitch]",
    "what a piece of [shit]",
    "this is [bullshit]",
    "you dumb [ass]",
    "kiss my [ass] loser",
    "you stupid [motherfucker]",
    "eat [shit] and die",
    "you [bastard]",
    "what a [dickhead]",
]

CLEAN = [
    "have a [nice] day",
    "[thanks] for your help with the report",
    "the [meeting] is moved to thursday",
    "please send me the [slides]",
    "I love this [recipe]",
    "what time does the [shop] open",
]

# Clean texts that a careless normaliser would break or flag: accents, other scripts, spaced and dotted
# acronyms, digits inside names, invisible characters that belong to the script or the emoji.
CLEAN_AS_IS = [
    ("accents", "Crème brûlée at the café was délicieux, merci beaucoup"),
    ("accents", "Der Bürgermeister öffnet die Straße am Montag"),
    ("accents", "¿Dónde está la estación de autobuses?"),
    ("accents", "Nguyễn Thị Minh Khai is a street in Hồ Chí Minh City"),
    ("script", "Привет, как у тебя дела сегодня?"),  # noqa: RUF001
    ("script", "Спасибо за помощь, всё работает"),
    ("script", "Καλημέρα, τι κάνεις σήμερα;"),
    ("script", "今日はいい天気ですね。散歩に行きましょう。"),
    ("script", "مرحبا، كيف حالك اليوم؟"),
    ("script", "नमस्ते, आप कैसे हैं?"),
    ("script", "می‌خواهم به کتابخانه بروم"),  # Persian, with a zero-width non-joiner
    ("acronym", "The U S A team won the relay"),
    ("acronym", "N A S A launched the probe on time"),
    ("acronym", "We met at the U.S.A. pavilion, i.e. the big one"),
    ("acronym", "Call the I T desk about the V P N"),
    ("digits", "Our l33t coding club meets in room 42"),
    ("digits", "The new Win10 build and the mp3 player both shipped"),
    ("digits", "H2O, CO2 and B2B are on page 7 of the catalogue"),
    ("digits", "Version 3.4.1 fixes the 4x4 grid and the 1080p video"),
    ("digits", "Sk8er boi and the gr8 outdoors are song titles"),
    ("emoji", "Family photo 👨‍👩‍👧 from the beach ☀️"),
    ("math", "Let x² + y² = r², with ½ of the area shaded"),
]

_CYRILLIC = str.maketrans("aeopcxyiAEOPCXHKMTBs", "аеорсхуіАЕОРСХНКМТВѕ")  # noqa: RUF001
_GREEK = str.maketrans("aoivukxpeAEOIKMNPTXYZBH", "αοινυκχρεΑΕΟΙΚΜΝΡΤΧΥΖΒΗ")
_LEET = str.maketrans("aeiost", "4310$7")
_ACCENTS = str.maketrans("aeiouc", "áéíóúç")


def _letters(text: str, how: Callable[[str], str]) -> str:
    return "".join(how(c) if c.isalpha() else c for c in text)


def _zero_width(text: str) -> str:
    return " ".join("\u200b".join(word) for word in text.split(" "))


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text)


def _zalgo(text: str) -> str:
    return _letters(text, lambda c: c + "\u0336\u0317")


WHOLE: dict[str, Callable[[str], str]] = {
    "zero_width": _zero_width,
    "homoglyph_cyrillic": lambda t: t.translate(_CYRILLIC),
    "homoglyph_greek": lambda t: t.translate(_GREEK),
    "fullwidth": _fullwidth,
    "combining_marks": _zalgo,
    "accents": lambda t: t.translate(_ACCENTS),
    "mixed_fullwidth_zero_width": lambda t: _zero_width(_fullwidth(t)),
}
PER_WORD: dict[str, Callable[[str], str]] = {
    "spaced": lambda w: " ".join(w),
    "dotted": lambda w: ".".join(w),
    "dashed": lambda w: "-".join(w),
    "leetspeak": lambda w: w.translate(_LEET),
    "leet_dotted": lambda w: ".".join(w.translate(_LEET)),
    # Ways the normaliser does not undo (see guards/normalise.py), kept so that recall is not overstated.
    "asterisk_mask": lambda w: re.sub("[aeiou]", "*", w, count=1),
    "mixed_separators": lambda w: "".join(c + " .-"[i % 3] for i, c in enumerate(w))[:-1],
    "right_to_left_override": lambda w: "\u202e" + w[::-1] + "\u202c",
}


def _plain(phrase: str) -> str:
    return phrase.replace("[", "").replace("]", "")


def _per_word(phrase: str, how: Callable[[str], str]) -> str:
    return re.sub(r"\[(\w+)\]", lambda m: how(m.group(1)), phrase)


def rows() -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for toxic, phrases in ((True, TOXIC), (False, CLEAN)):
        for phrase in phrases:
            plain = _plain(phrase)
            found.append({"text": plain, "toxic": toxic, "kind": "plain", "base": plain})
            variants = {kind: how(plain) for kind, how in WHOLE.items()}
            variants |= {kind: _per_word(phrase, how) for kind, how in PER_WORD.items()}
            for kind, text in variants.items():
                if text != plain:
                    found.append({"text": text, "toxic": toxic, "kind": kind, "base": plain})
    found += [{"text": text, "toxic": False, "kind": kind, "base": text} for kind, text in CLEAN_AS_IS]
    return found


if __name__ == "__main__":
    for row in rows():
        print(json.dumps(row, ensure_ascii=False))
