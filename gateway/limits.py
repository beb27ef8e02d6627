"""What one request may cost, checked before any model or upstream sees it, so that one client never
degrades another.

- ``max_json_depth``: nesting of a JSON body, checked on the bytes before decoding (deep nesting made
  the decoder or a later encoder hit Python's recursion limit: a 500);
- ``max_n``: choices per request (``n`` is fanned out as n upstream calls where the upstream ignores it);
- ``max_input_texts`` and ``max_input_chars``: the texts a request gives the guards, counted and summed
  (a huge input held the shared guard models for everyone).

Every refusal is a 400 or 413 in OpenAI's envelope whose message names the setting.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from itertools import accumulate

import msgspec

from gateway.errors import BodyTooLarge, InvalidRequest

# spaCy (the PII guard) refuses texts over 1,000,000 characters (error E088) and needs about 1 GB of
# memory per 100,000 characters it parses, so no budget may exceed this.
MAX_INPUT_CHARS_CEILING = 1_000_000
# Well under Python's recursion limit (1,000), which the decoders and encoders count against.
MAX_JSON_DEPTH_CEILING = 500
DEFAULT_MAX_JSON_DEPTH = 64


class LimitsSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``limits`` in the configuration."""

    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    max_n: int = 16
    max_input_texts: int = 1_000
    max_input_chars: int = 200_000

    def __post_init__(self) -> None:
        for name in ("max_json_depth", "max_n", "max_input_texts", "max_input_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        if self.max_json_depth > MAX_JSON_DEPTH_CEILING:
            raise ValueError(f"max_json_depth: must be at most {MAX_JSON_DEPTH_CEILING}")
        if self.max_input_chars > MAX_INPUT_CHARS_CEILING:
            limit = f"{MAX_INPUT_CHARS_CEILING:,}"
            raise ValueError(f"max_input_chars: must be at most {limit} (the most spaCy parses at once)")


_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1, read as signed bytes


def json_depth(body: bytes) -> int:
    r"""How deeply a JSON document nests arrays and objects, read from its bytes in linear time (brackets
    in strings do not count).

    >>> json_depth(b'{"a": [1, {"b": "[[[\\\\"}], "c": {"d\\"[": 2}}')
    3
    >>> json_depth(b"[]"), json_depth(b"5")
    (1, 0)
    """
    # Escaped backslashes, then escaped quotes, go first (pairing from the left, as JSON does); what is
    # left between quotes is string text, in every odd part of the split.
    parts = body.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')
    brackets = b"".join(parts[::2]).translate(None, _NOT_BRACKETS)
    return max(accumulate(array("b", brackets.translate(_STEPS))), default=0)


def check_json_depth(body: bytes, max_depth: int) -> None:
    # A document cannot nest deeper than it has opening brackets: most bodies stop at this count.
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return
    depth = json_depth(body)
    if depth > max_depth:
        raise InvalidRequest(
            f"The request body nests JSON {depth} levels deep; this gateway accepts at most {max_depth} "
            "(limits.max_json_depth)."
        )


def check_n(n: int | None, limits: LimitsSettings) -> None:
    if n is not None and n > limits.max_n:
        raise InvalidRequest(
            f"'n' must be at most {limits.max_n} on this gateway (limits.max_n); got {n}.", param="n"
        )


def check_input_budget(texts: Iterable[str], limits: LimitsSettings, param: str) -> None:
    """The texts a request gives the guards, against the per-request budget: 413 naming the limit."""
    count = chars = 0
    for text in texts:
        count += 1
        chars += len(text)
    if count > limits.max_input_texts:
        raise BodyTooLarge(
            f"The request has {count:,} texts to check; this gateway accepts at most "
            f"{limits.max_input_texts:,} per request (limits.max_input_texts).",
            param=param,
            code="input_too_large",
        )
    if chars > limits.max_input_chars:
        raise BodyTooLarge(
            f"The request has {chars:,} characters of text to check; this gateway accepts at most "
            f"{limits.max_input_chars:,} per request (limits.max_input_chars).",
            param=param,
            code="input_too_large",
        )
