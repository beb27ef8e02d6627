"""Licences in generated text: SPDX identifiers and the headers of common licences."""

from __future__ import annotations

import re

import msgspec

_SPDX = re.compile(r"SPDX-License-Identifier:\s*([A-Za-z0-9.+()\- ]+?)\s*(?:\*/|-->|$)", re.MULTILINE)
# A phrase each licence's standard header carries, and its SPDX identifier.
_HEADERS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"GNU\s+Affero\s+General\s+Public\s+License", re.I), "AGPL-3.0"),
    (re.compile(r"GNU\s+Lesser\s+General\s+Public\s+License", re.I), "LGPL"),
    (re.compile(r"GNU\s+General\s+Public\s+License", re.I), "GPL"),
    (re.compile(r"Mozilla\s+Public\s+License,?\s+v(?:ersion)?\.?\s*2\.0", re.I), "MPL-2.0"),
    (re.compile(r"Licensed\s+under\s+the\s+Apache\s+License,?\s+Version\s+2\.0", re.I), "Apache-2.0"),
    (re.compile(r"Permission\s+is\s+hereby\s+granted,\s+free\s+of\s+charge", re.I), "MIT"),
    (re.compile(r"Redistribution\s+and\s+use\s+in\s+source\s+and\s+binary\s+forms", re.I), "BSD"),
    (re.compile(r"Creative\s+Commons\s+Attribution-NonCommercial", re.I), "CC-BY-NC"),
    (
        re.compile(r"All\s+rights\s+reserved\.?\s+(?:Proprietary|Confidential)", re.I),
        "LicenseRef-Proprietary",
    ),
]


class LicenceMention(msgspec.Struct, frozen=True):
    licence: str  # an SPDX identifier, or a family prefix (GPL, LGPL, BSD)
    start: int
    end: int
    how: str  # "spdx" or "header"


def licence_mentions(text: str) -> list[LicenceMention]:
    """Every licence the text names.

    >>> [m.licence for m in licence_mentions("// SPDX-License-Identifier: GPL-3.0-or-later\\nint x;")]
    ['GPL-3.0-or-later']
    """
    found = [LicenceMention(m.group(1).strip(), m.start(), m.end(), "spdx") for m in _SPDX.finditer(text)]
    for pattern, licence in _HEADERS:
        for match in pattern.finditer(text):
            if licence == "GPL" and re.search(r"(Lesser|Affero)\s*$", text[: match.start()][-12:], re.I):
                continue
            found.append(LicenceMention(licence, match.start(), match.end(), "header"))
    return found


def matches(licence: str, listed: str) -> bool:
    """Whether ``licence`` is ``listed`` or a member of its family (``GPL`` covers ``GPL-3.0-only``).

    >>> matches("GPL-3.0-or-later", "GPL"), matches("LGPL-2.1", "GPL"), matches("MIT", "MIT")
    (True, False, True)
    """
    licence, listed = licence.upper(), listed.upper()
    return licence == listed or licence.startswith(listed + "-")
