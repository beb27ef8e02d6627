"""What one request may cost, checked before any model or upstream sees it, so that one client never
degrades another.

- ``max_json_depth``: nesting of a JSON body, checked on the bytes before decoding (deep nesting made
  the decoder or a later encoder hit Python's recursion limit: a 500);
- ``max_n``: answers per request asked of an upstream (``n`` is fanned out as n upstream calls where the
  upstream ignores it): the client's ``n``, times ``best_of_n.n`` under a best-of-n policy;
- ``max_input_texts`` and ``max_input_chars``: the texts a request gives the guards, counted and summed
  (a huge input held the shared guard models for everyone).

Every refusal is a 400 or 413 in OpenAI's envelope whose message names the setting.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable
from itertools import accumulate

import anyio
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

    # Nesting of a JSON body, checked on the bytes before decoding.
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    # Answers per request asked of an upstream: the client's n, times best_of_n.n under a best-of-n policy.
    max_n: int = 16
    # The texts one request gives the guards, counted.
    max_input_texts: int = 1_000
    # The characters of those texts, summed (at most 1,000,000: the most spaCy parses at once).
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
_STRING = re.compile(rb'"[^"]*"')  # once escapes are gone, a string has no quote inside
_NOT_BACKSLASH = re.compile(rb"[^\\]")
# Bytes scanned per step: the steps hold the GIL only briefly, so a scan on a worker thread leaves the
# event loop free, and a document too deep is refused as soon as it is seen.
_CHUNK = 64 * 1024


def json_depth(body: bytes, stop_above: int | None = None) -> int:
    r"""How deeply a JSON document nests arrays and objects, read from its bytes in linear time (brackets
    in strings do not count). With ``stop_above``, the scan may stop once the depth passes it: the
    result is then only known to be greater.

    >>> json_depth(b'{"a": [1, {"b": "[[[\\\\"}], "c": {"d\\"[": 2}}')
    3
    >>> json_depth(b"[]"), json_depth(b"5"), json_depth(b"[[[[]]]]", stop_above=2) > 2
    (1, 0, True)
    """
    depth = deepest = 0
    in_string = False
    start = 0
    while start < len(body) and (stop_above is None or deepest <= stop_above):
        end = min(start + _CHUNK, len(body))
        if body[end - 1] == 0x5C:  # never cut an escape from what it escapes
            after = _NOT_BACKSLASH.search(body, end)
            end = after.end() if after else len(body)
        # Escaped backslashes, then escaped quotes, go first (pairing from the left, as JSON does).
        chunk = body[start:end].replace(b"\\\\", b"").replace(b'\\"', b"")
        start = end
        outside = _STRING.sub(b"", b'"' + chunk if in_string else chunk)
        quote = outside.find(b'"')  # a string still open at the end of the chunk
        in_string = quote >= 0
        brackets = (outside[:quote] if in_string else outside).translate(None, _NOT_BRACKETS)
        if brackets:
            running = list(accumulate(array("b", brackets.translate(_STEPS)), initial=depth))
            deepest = max(deepest, max(running))
            depth = running[-1]
    return deepest


# Bodies at least this big are scanned on a worker thread, not on the event loop.
_OFF_LOOP_BYTES = 256 * 1024


async def check_body_depth(body: bytes, max_depth: int) -> None:
    """``check_json_depth``, on a worker thread for a big body (a 4 MiB body built to be slow to scan
    takes about a second of CPU), so the event loop serves everyone else meanwhile."""
    if len(body) < _OFF_LOOP_BYTES:
        check_json_depth(body, max_depth)
    else:
        await anyio.to_thread.run_sync(check_json_depth, body, max_depth)


def check_json_depth(body: bytes, max_depth: int) -> None:
    # A document cannot nest deeper than it has opening brackets: most bodies stop at this count.
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return
    if json_depth(body, stop_above=max_depth) > max_depth:
        raise InvalidRequest(
            f"The request body nests JSON more than {max_depth} levels deep, the most this gateway "
            "accepts (limits.max_json_depth)."
        )


def check_n(n: int | None, limits: LimitsSettings) -> None:
    if n is not None and n > limits.max_n:
        raise InvalidRequest(
            f"'n' must be at most {limits.max_n} on this gateway (limits.max_n); got {n}.", param="n"
        )


def check_candidates(n: int, best_of: int, limits: LimitsSettings, policy: str) -> None:
    """Under a best-of-n policy each of the client's ``n`` choices costs ``best_of`` upstream answers: their
    product is held to ``limits.max_n`` too, before any upstream call."""
    if n * best_of > limits.max_n:
        most = limits.max_n // best_of
        raise InvalidRequest(
            f"'n' must be at most {most} on this gateway under policy '{policy}': each choice is the best "
            f"of {best_of} answers, and a request may ask for {limits.max_n} answers in all "
            f"(limits.max_n); got {n}.",
            param="n",
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
