"""How a client sees an answer, when that is not the upstream's own shape: another OpenAI surface served
through chat completions (``gateway.responses``). The guarded path works on chat completions and chunks
throughout; a ``Presenter`` reshapes what goes out last, after recording and restoring."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

Chunk = dict[str, Any]


class Presenter(Protocol):
    @property
    def completion_id(self) -> str:
        """The answer's id as the client sees it (what it sends back as feedback)."""

    def whole(self, body: dict[str, Any]) -> dict[str, Any]:
        """A whole chat completion, as the client sees it."""

    def frames(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[bytes]:
        """Chat chunks → the server-sent-event frames the client reads, ending the stream well-formed."""
