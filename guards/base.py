"""What every built-in guard shares: its name, and nothing of its own to close (models belong to the
shared runner pool, which the app closes)."""

from __future__ import annotations


class GuardBase:
    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def close(self) -> None:
        return None
