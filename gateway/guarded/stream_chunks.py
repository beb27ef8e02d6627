"""The chunks a guarded stream writes itself (released text, a refusal, a finish), shaped like the
upstream's: chat (``delta``) or legacy completions (``text``), with the id, object, created and model of
the last upstream chunk seen."""

from __future__ import annotations

from typing import Any

from gateway.relay.streaming import Chunk

_COPIED = ("id", "object", "created", "model")


class ChunkWriter:
    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.template: Chunk = {}  # the last upstream chunk: its id, object, created, model are copied

    def shell(self) -> Chunk:
        return {key: self.template[key] for key in _COPIED if key in self.template}

    def chunk(self, index: int, delta: dict[str, Any], logprobs: dict[str, Any] | None = None) -> Chunk:
        choice: dict[str, Any] = {"index": index}
        if self.chat:
            choice["delta"] = delta
        else:
            choice["text"] = delta.get("text", "")
        if logprobs is not None:
            choice["logprobs"] = logprobs
        choice["finish_reason"] = None
        return {**self.shell(), "choices": [choice]}

    def text(self, index: int, field: str, text: str, logprobs: dict[str, Any] | None = None) -> Chunk:
        return self.chunk(index, {field: text}, logprobs)

    def finish(self, index: int, finish_reason: str | None) -> Chunk:
        chunk = self.chunk(index, {})
        chunk["choices"][0]["finish_reason"] = finish_reason
        return chunk

    def refusal(self, index: int, refusal: str) -> Chunk:
        if self.chat:
            choice = {"index": index, "delta": {"refusal": refusal}, "finish_reason": "content_filter"}
        else:
            choice = {"index": index, "text": "", "finish_reason": "content_filter"}
        return {**self.shell(), "choices": [choice]}
