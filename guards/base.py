"""What every built-in guard shares: its name, and nothing of its own to close (models belong to the
shared runner pool, which the app closes)."""

from __future__ import annotations

from typing import ClassVar

from guards.normalise import TextView


class GuardBase:
    # Which normalised view of each text the pipeline gives the guard (see ``guards.normalise``).
    view: ClassVar[TextView] = TextView.CANONICAL
    # Whether a verdict depends on nothing but the text, the thresholds and the rule's categories (no
    # sources, no kinds, no prompt): such input verdicts may be kept per tenant (``guards.verdict_cache``).
    context_free: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def close(self) -> None:
        return None
