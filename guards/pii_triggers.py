"""Which texts presidio's pattern recognisers cannot match, so the PII guard need not analyse them.

Analysis runs spaCy's whole pipeline (two thirds of the guard's cost on a guarded stream, see
``docs/performance-throughput.md``), whatever the entities asked for. Every pattern entity of the
default set needs a character a plain sentence often lacks: a digit (phone, card, IBAN, SSN, bank
number, passport, crypto address, IPv4), an ``@`` (e-mail), or a ``:`` (IPv6, which can be all
letters: ``fe80::cafe``). A text with none of the characters its entities need is judged clean without
analysis: exactly what presidio would find there for those entities. Entities found by the NLP model
(PERSON, LOCATION...) and any entity not listed here have no trigger: they are always analysed.

Checked against presidio-analyzer 2.2's recognisers (``predefined_recognizers``); a recogniser that
needs less must be removed from ``TRIGGERS``.
"""

from __future__ import annotations

import re
from collections.abc import Collection

# ``\d`` is Unicode-aware here, as in presidio's own patterns (a fullwidth digit counts).
_DIGIT = r"\d"
TRIGGERS: dict[str, str] = {
    "PHONE_NUMBER": _DIGIT,
    "CREDIT_CARD": _DIGIT,
    "IBAN_CODE": _DIGIT,  # two letters, then two check digits
    "US_SSN": _DIGIT,
    "US_BANK_NUMBER": _DIGIT,
    "US_PASSPORT": _DIGIT,
    "CRYPTO": _DIGIT,  # a bitcoin address starts with 1, 3 or bc1
    "EMAIL_ADDRESS": "@",
    "IP_ADDRESS": r"\d|:",
}


def trigger_pattern(entities: Collection[str]) -> re.Pattern[str] | None:
    """What a text must contain for any of ``entities`` to be found in it, or None when some entity
    can be found in any text (it is always analysed)."""
    if not entities or any(entity not in TRIGGERS for entity in entities):
        return None
    return re.compile("|".join(sorted({TRIGGERS[entity] for entity in entities})))
