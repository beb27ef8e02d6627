"""The calls ``hhh feedback constitute`` makes to an OpenAI-compatible server (the gateway itself, or any
upstream), and the RL-CAI ranking: which of two answers better follows a principle, with the critic's
first-token probabilities of "A" and "B" where the server gives log probabilities.
"""

from __future__ import annotations

import math
import re
from typing import Any

import httpx
import msgspec

from feedback.constitution import Principle

RANK_TOP_LOGPROBS = 5
_LETTER = {"A": "A", "1": "A", "B": "B", "2": "B"}
_FIRST_LETTER = re.compile(r"(?<![A-Za-z0-9])([AB12])(?![A-Za-z0-9])")


class PromptFailed(Exception):
    """One prompt could not be done (its reason is the message); counted, logged, retried on a rerun."""


class ChatClient:
    """Chat completions from one server, each call bounded by the client's timeout."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float, transport: Any = None) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout_s, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def complete(self, step: str, body: dict[str, Any]) -> dict[str, Any]:
        """The first choice of a chat completion; a failure is ``PromptFailed`` naming ``step``."""
        try:
            response = await self._http.post("chat/completions", json=body)
        except httpx.TimeoutException:
            raise PromptFailed(f"{step}: timed out") from None
        except httpx.HTTPError as exc:
            raise PromptFailed(f"{step}: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise PromptFailed(f"{step}: HTTP {response.status_code} {_error_code(response)}".rstrip())
        try:
            choice = response.json()["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise PromptFailed(f"{step}: not a chat completion") from None
        return choice if isinstance(choice, dict) else {}

    async def text(self, step: str, body: dict[str, Any]) -> str:
        """The first choice's text; an empty or withheld one (a guard blocked it) is ``PromptFailed``."""
        choice = await self.complete(step, body)
        message = choice.get("message") or {}
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            reason = (
                "withheld (content_filter)" if choice.get("finish_reason") == "content_filter" else "empty"
            )
            raise PromptFailed(f"{step}: {reason}")
        return content.strip()


def _error_code(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("code") or error.get("type") or "")
    except (ValueError, AttributeError):
        return ""


class Ranking(msgspec.Struct, kw_only=True):
    """The critic's choice between the answer and its revision, against one principle."""

    principle: str
    revision_is: str  # "A" or "B": where the revision was shown (the order is drawn per prompt)
    choice: str | None  # "revision", "original", or None when the critic named neither
    probability: float | None = None  # of the choice, normalised over A and B; None without logprobs
    probabilities: dict[str, float] | None = None  # {"A": p, "B": 1 - p}
    reply: str = ""


def ranking_messages(prompt: str, first: str, second: str, principle: Principle) -> list[dict[str, Any]]:
    """Ask which of two answers better follows ``principle`` (judged by its critique request)."""
    return [
        {
            "role": "system",
            "content": "You compare two answers of an AI assistant against a principle. Reply with one "
            "letter only: A or B.",
        },
        {
            "role": "user",
            "content": f"Request:\n{prompt}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}\n\n"
            f"Principle (what a reviewer checks): {principle.critique}\n\n"
            "Which answer follows the principle better, with fewer faults of this kind? Reply A or B.",
        },
    ]


def letter_probabilities(choice: dict[str, Any]) -> dict[str, float] | None:
    """P(A) and P(B) from the first generated token's top log probabilities, normalised over the two
    ("A"/"1" and "B"/"2", spaces and brackets ignored); None when the server gave none of them.

    >>> letter_probabilities({"logprobs": {"content": [{"token": "B", "logprob": -0.1, "top_logprobs": [
    ...     {"token": "B", "logprob": math.log(0.6)}, {"token": " A", "logprob": math.log(0.2)},
    ...     {"token": "C", "logprob": math.log(0.1)}]}]}})
    {'A': 0.25, 'B': 0.75}
    """
    content = (choice.get("logprobs") or {}).get("content") or []
    if not content or not isinstance(content[0], dict):
        return None
    mass = {"A": 0.0, "B": 0.0}
    for item in content[0].get("top_logprobs") or []:
        letter = _LETTER.get(str(item.get("token", "")).strip(" ()[].:*\n\t").upper())
        if letter is not None and isinstance(item.get("logprob"), int | float):
            mass[letter] += math.exp(item["logprob"])
    total = mass["A"] + mass["B"]
    if total <= 0.0:
        return None
    return {"A": round(mass["A"] / total, 6), "B": round(mass["B"] / total, 6)}


def read_ranking(choice: dict[str, Any], principle: str, revision_is: str) -> Ranking:
    """The critic's choice: from the probabilities when there are some, else the first A or B it wrote."""
    reply = str((choice.get("message") or {}).get("content") or "").strip()
    probabilities = letter_probabilities(choice)
    letter = None
    if probabilities is not None and probabilities["A"] != probabilities["B"]:
        letter = "A" if probabilities["A"] > probabilities["B"] else "B"
    elif found := _FIRST_LETTER.search(reply.upper()):
        letter = _LETTER[found.group(1)]
    if letter is None:
        return Ranking(principle=principle, revision_is=revision_is, choice=None, reply=reply)
    return Ranking(
        principle=principle, revision_is=revision_is,
        choice="revision" if letter == revision_is else "original",
        probability=None if probabilities is None else probabilities[letter],
        probabilities=probabilities, reply=reply,
    )  # fmt: skip
