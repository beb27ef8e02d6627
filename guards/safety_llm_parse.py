"""Reading a safety classifier's answer: safe or unsafe, a score, and the category codes it named.

Anything else is malformed (``MalformedAnswer``), which the guard reports as a failure so the rule's
``on_error`` decides: a classifier that says something unexpected has not said "safe".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import msgspec

MAX_CODES = 32  # a verdict naming more is not a verdict
_QUOTE_CHARS = 80  # of a malformed answer, in the error


class MalformedAnswer(ValueError):
    """The model's answer is neither safe nor unsafe in the template's terms."""


class Reading(msgspec.Struct, frozen=True):
    unsafe: float  # 0..1: 1.0 or 0.0 from the text; P(unsafe) from log probabilities when given
    codes: list[str]  # category codes named in an unsafe answer, as written (``S10``)
    scored_by: str  # "text" or "logprobs"


class AnswerReader:
    def __init__(
        self,
        unsafe_pattern: str,
        safe_pattern: str,
        codes_pattern: str | None = None,
        unsafe_token: str | None = None,
        safe_token: str | None = None,
    ) -> None:
        self.unsafe = re.compile(unsafe_pattern, re.IGNORECASE)
        self.safe = re.compile(safe_pattern, re.IGNORECASE)
        self.codes = re.compile(codes_pattern) if codes_pattern else None
        self.tokens = (
            (_token_key(unsafe_token), _token_key(safe_token)) if unsafe_token and safe_token else None
        )

    def read(self, text: str, top_logprobs: Mapping[str, float] | None = None) -> Reading:
        """The verdict of ``text``; the first token's ``top_logprobs`` (token -> log probability), when
        the server gave them and they hold the template's tokens, make its score.

        >>> reader = AnswerReader(r"^\\s*unsafe\\b", r"^\\s*safe\\b", r"\\bS\\d{1,2}\\b")
        >>> reader.read("unsafe\\nS1,S10")
        Reading(unsafe=1.0, codes=['S1', 'S10'], scored_by='text')
        >>> reader.read(" safe")
        Reading(unsafe=0.0, codes=[], scored_by='text')
        """
        found = self.unsafe.search(text)
        codes: list[str] = []
        if found:
            verdict = 1.0
            if self.codes is not None:
                codes = list(dict.fromkeys(self.codes.findall(text[found.end() :])))
                if len(codes) > MAX_CODES:
                    raise MalformedAnswer(
                        f"{len(codes)} category codes (at most {MAX_CODES}): {_quote(text)}"
                    )
        elif self.safe.search(text):
            verdict = 0.0
        else:
            verdict = math.nan
        probability = self._probability(top_logprobs) if top_logprobs else None
        if probability is not None:
            return Reading(probability, codes, "logprobs")
        if math.isnan(verdict):
            raise MalformedAnswer(
                f"answer is neither safe nor unsafe (expected /{self.unsafe.pattern}/ or "
                f"/{self.safe.pattern}/): {_quote(text)}"
            )
        return Reading(verdict, codes, "text")

    def _probability(self, top: Mapping[str, float]) -> float | None:
        """P(unsafe token) / (P(unsafe) + P(safe)) over the first token's alternatives; None unless both
        are among them (a tokeniser that splits "unsafe" into pieces must not read as "safe" for sure)."""
        if self.tokens is None:
            return None
        unsafe_key, safe_key = self.tokens
        unsafe = _best(top, unsafe_key)
        safe = _best(top, safe_key)
        if unsafe is None or safe is None:
            return None
        # Softmax over the two, stable for large negative log probabilities.
        return 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, safe - unsafe))))


def _token_key(token: str) -> str:
    # Tokenisers write a leading space as "▁" (SentencePiece) or "Ġ" (byte-level BPE).
    return token.replace("\u2581", " ").replace("\u0120", " ").strip().casefold()


def _best(top: Mapping[str, float], key: str) -> float | None:
    values = [
        logprob
        for token, logprob in top.items()
        if _token_key(token) == key and isinstance(logprob, int | float) and not math.isnan(logprob)
    ]
    return max(values) if values else None


def _quote(text: str) -> str:
    shown = text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "..."
    return repr(shown)
