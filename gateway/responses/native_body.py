"""The Responses body a native upstream receives: the client's, with the input guards' rewrites carried over.

The input guards judge the request's chat translation (``gateway.responses.request``, native mode), so a
redaction rewrites a chat path (``messages[2].content``). ``TranslatedRequest.param_of`` names the
Responses parameter it came from (``input[1].content[0].text``), and the rewrite is written there. A rewrite
that cannot be placed fails the request: the unredacted text is never sent.

>>> from gateway.responses.request import translate_request
>>> raw = {"model": "m", "instructions": "Be brief.", "input": [{"role": "user", "content": "Mail a@b.io"}]}
>>> translated = translate_request(raw, native=True)
>>> chat = {**translated.chat, "messages": [translated.chat["messages"][0],
...     {"role": "user", "content": "Mail <EMAIL>"}]}
>>> body = NativeBody(raw, translated)
>>> msgspec.json.decode(body.encode(msgspec.json.encode(chat)))["input"]
[{'role': 'user', 'content': 'Mail <EMAIL>'}]
>>> raw["input"][0]["content"]  # the client's own body is not changed
'Mail a@b.io'
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from gateway.errors import GatewayError
from gateway.guarded.text_slots import chat_request_slots
from gateway.responses.request import GATEWAY_FIELDS, TranslatedRequest

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class NativeBody:
    def __init__(self, raw: dict[str, Any], translated: TranslatedRequest) -> None:
        self._raw = {key: value for key, value in raw.items() if key not in GATEWAY_FIELDS}
        self._translated = translated
        self.chat_bytes = msgspec.json.encode(translated.chat)  # the chat body as the guards first read it
        self._raw_bytes: bytes | None = None

    def encode(self, chat_bytes: bytes) -> bytes:
        """The Responses body for the chat body the guarded path would send (``chat_bytes``)."""
        if (
            chat_bytes == self.chat_bytes
        ):  # nothing was rewritten: the client's body, less the gateway's fields
            if self._raw_bytes is None:
                self._raw_bytes = msgspec.json.encode(self._raw)
            return self._raw_bytes
        rewritten = msgspec.json.decode(chat_bytes)
        before = chat_request_slots(msgspec.json.decode(self.chat_bytes))
        after = chat_request_slots(rewritten)
        body = msgspec.json.decode(msgspec.json.encode(self._raw))  # a deep copy of plain JSON
        if [slot.where for slot in before] != [slot.where for slot in after]:
            raise _unplaced("the rewritten request has other texts than the one judged")
        for old, new in zip(before, after, strict=True):
            if old.text != new.text:
                write_at(body, self._translated.param_of(new.where), new.text)
        return msgspec.json.encode(body)


def write_at(body: dict[str, Any], param: str, text: str) -> None:
    """Write ``text`` at a Responses parameter path (``input[1].content[0].text``); ``metadata[i].key`` and
    ``.value`` name the i-th pair, as the guards' reports do.

    >>> body = {"metadata": {"who": "a@b.io"}, "tools": [{"description": "x"}]}
    >>> write_at(body, "metadata[0].value", "<EMAIL>"); write_at(body, "metadata[0].key", "<NAME>")
    >>> write_at(body, "tools[0].description", "y"); body
    {'metadata': {'<NAME>': '<EMAIL>'}, 'tools': [{'description': 'y'}]}
    """
    steps: list[str | int] = [int(index) if index else name for name, index in _STEP.findall(param)]
    try:
        if len(steps) == 3 and steps[0] == "metadata" and isinstance(steps[1], int):
            _write_metadata(body["metadata"], steps[1], str(steps[2]), text)
            return
        holder: Any = body
        for step in steps[:-1]:
            holder = holder[step]
        if not isinstance(holder[steps[-1]], str):
            raise TypeError(param)
        holder[steps[-1]] = text
    except (KeyError, IndexError, TypeError):
        raise _unplaced(f"no text at '{param}'") from None


def _write_metadata(metadata: dict[str, Any], index: int, part: str, text: str) -> None:
    key = list(metadata)[index]
    if part == "value":
        metadata[key] = text
        return
    while text in metadata and text != key:  # two keys redacted alike must not overwrite each other
        text += "_"
    pairs = [(text if name == key else name, value) for name, value in metadata.items()]
    metadata.clear()
    metadata.update(pairs)


def _unplaced(why: str) -> GatewayError:
    # A gateway bug, never the client's: fail closed (nothing is sent), and say so.
    return GatewayError(f"The gateway could not apply its input guards' rewrite ({why}); nothing was sent.")
