"""A reward model for fast unit tests of best-of-n: it rewards politeness words, one point each (the real
loader and scorer have their own tests, and the integration test uses a real model)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

POLITE_WORDS = ("please", "thank", "glad", "happy", "kind", "of course", "sure")


def politeness(answer: str) -> float:
    """
    >>> politeness("Of course! Glad to help, thank you."), politeness("Go away.")
    (3.0, 0.0)
    """
    lowered = answer.lower()
    return float(sum(word in lowered for word in POLITE_WORDS))


class PolitenessScorer:
    """Scores (prompt, answer) pairs by the answer's politeness; records each batch; can be made slow,
    broken, or to give one fixed reward."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, str]]] = []
        self.delay_s = 0.0
        self.fail = False
        self.fixed: float | None = None

    async def score(self, items: Sequence[tuple[str, str]]) -> list[float]:
        self.batches.append(list(items))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("reward model crashed")
        return [politeness(answer) if self.fixed is None else self.fixed for _, answer in items]
