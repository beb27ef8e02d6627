"""Putting a request's own values back into its streamed answer: one more stage in the relay, after the
recording (which keeps the placeholders) and before the client.

Each choice's texts (``content``, ``refusal``, reasoning; a legacy ``text``) get a ``Restorer`` of their
own: a placeholder split across chunks, or across the windows of the stream guard, goes out whole as its
value, and a tail that may still become one is held until the next text of the choice, its finish, the
next text of another field, or the end of the stream. Tool and function calls, which the stream guard
releases whole, are restored whole. Chunks are copied, never changed: the recorder holds them. Logprobs
spell the placeholders, so a choice keeps them only until restoring first changes its text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.errors import GatewayError
from gateway.guarded.pseudonyms import Pseudonyms, Restorer
from gateway.relay.streaming import Chunk

_SHELL = ("id", "object", "created", "model")


class _Choice:
    def __init__(self) -> None:
        self.restorers: dict[str, Restorer] = {}
        self.changed = False  # restoring changed its text: its logprobs no longer fit


class _Restoring:
    def __init__(self, pseudonyms: Pseudonyms, chat: bool) -> None:
        self.pseudonyms = pseudonyms
        self.chat = chat
        self.choices: dict[int, _Choice] = {}

    def on_chunk(self, chunk: Chunk) -> list[Chunk]:
        choices = chunk.get("choices")
        if not choices:  # usage or the report: every choice is over
            return [*self.flush_all(chunk), chunk]
        before: list[Chunk] = []
        restored = []
        for choice in choices:
            index = choice.get("index", 0)
            state = self.choices.setdefault(index, _Choice())
            texts = self._texts(choice)
            finished = choice.get("finish_reason") is not None
            # Text held in another field came before what this chunk brings (or the choice ends): it
            # goes first.
            moves_on = bool(texts) or finished or self._has_calls(choice)
            held = {f: r for f, r in state.restorers.items() if r.holding and moves_on and f not in texts}
            if held:
                before.append(self._held_chunk(chunk, index, {f: r.flush() for f, r in held.items()}))
            restored.append(self._restore_choice(choice, state, texts, finished))
        return [*before, {**chunk, "choices": restored}]

    def flush_all(self, template: Chunk) -> list[Chunk]:
        out = []
        for index, state in self.choices.items():
            held = {f: r.flush() for f, r in state.restorers.items() if r.holding}
            if held:
                out.append(self._held_chunk(template, index, held))
        return out

    def _texts(self, choice: dict[str, Any]) -> dict[str, str]:
        if not self.chat:
            text = choice.get("text")
            return {"text": text} if isinstance(text, str) and text else {}
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return {}
        return {k: v for k, v in delta.items() if k != "role" and isinstance(v, str) and v}

    def _has_calls(self, choice: dict[str, Any]) -> bool:
        delta = choice.get("delta")
        return (
            self.chat
            and isinstance(delta, dict)
            and bool(delta.get("tool_calls") or delta.get("function_call"))
        )

    def _restore_choice(
        self, choice: dict[str, Any], state: _Choice, texts: dict[str, str], finished: bool
    ) -> dict[str, Any]:
        out = {}
        for field, text in texts.items():
            restorer = state.restorers.setdefault(field, Restorer(self.pseudonyms))
            out[field] = restorer.feed(text) + (restorer.flush() if finished else "")
            state.changed = state.changed or out[field] != text
        copy = dict(choice)
        if self.chat and isinstance(choice.get("delta"), dict):
            delta = {**choice["delta"], **out}
            state.changed = self._restore_calls(delta) or state.changed
            copy["delta"] = delta
        elif out:
            copy.update(out)
        if state.changed and copy.get("logprobs") is not None:
            copy["logprobs"] = None
        return copy

    def _restore_calls(self, delta: dict[str, Any]) -> bool:
        """Tool calls and a legacy function call, released whole by the stream guard: restored whole."""
        changed = False
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [self._restore_call(call, "function") for call in calls]
            changed = delta["tool_calls"] != calls
        if isinstance(delta.get("function_call"), dict):
            function_call = self._restore_call({"function_call": delta["function_call"]}, "function_call")
            changed = changed or function_call != {"function_call": delta["function_call"]}
            delta["function_call"] = function_call["function_call"]
        return changed

    def _restore_call(self, call: Any, key: str) -> Any:
        function = call.get(key) if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
            return call
        return {**call, key: {**function, "arguments": self.pseudonyms.restore(function["arguments"])}}

    def _held_chunk(self, template: Chunk, index: int, texts: dict[str, str]) -> Chunk:
        choice: dict[str, Any] = {"index": index}
        if self.chat:
            choice["delta"] = texts
        else:
            choice["text"] = "".join(texts.values())
        choice["finish_reason"] = None
        return {**{k: template[k] for k in _SHELL if k in template}, "choices": [choice]}


async def restore_stream(
    chunks: AsyncIterator[Chunk], pseudonyms: Pseudonyms, chat: bool
) -> AsyncIterator[Chunk]:
    """``chunks`` with the request's placeholders replaced by their values (see the module's doc)."""
    restoring = _Restoring(pseudonyms, chat)
    last: Chunk = {}
    try:
        async for chunk in chunks:
            last = chunk
            for out in restoring.on_chunk(chunk):
                yield out
    except GatewayError:  # the upstream failed: what was held goes out before the error event
        for out in restoring.flush_all(last):
            yield out
        raise
    for out in restoring.flush_all(last):
        yield out
