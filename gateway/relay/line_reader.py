"""Bytes off an upstream socket → text lines, with a cap on how much one unfinished line may hold.

httpx's own ``aiter_lines`` keeps an unfinished line in memory however long it grows: an upstream that
never sends a line break could fill the gateway's memory. Lines end with ``\\n``, ``\\r\\n`` or ``\\r``,
as server-sent events allow. A line break is one byte that no UTF-8 sequence contains, so each finished
line decodes on its own.

>>> reader = LineReader(max_line_bytes=16)
>>> reader.feed(b"data: a\\r"), reader.feed(b"\\ndata: b\\n\\n"), reader.feed(b"data: unfinished")
(['data: a'], ['data: b', ''], [])
>>> reader.feed(b" and too long")
Traceback (most recent call last):
...
gateway.errors.UpstreamEventTooLarge: The upstream sent a line longer than 16 bytes (relay.max_event_bytes).
"""

from __future__ import annotations

from gateway.errors import UpstreamEventTooLarge


def too_large(limit: int, what: str) -> UpstreamEventTooLarge:
    return UpstreamEventTooLarge(
        f"The upstream sent {what} longer than {limit} bytes (relay.max_event_bytes)."
    )


class LineReader:
    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._pending = bytearray()  # the unfinished last line
        self._after_cr = False  # the last byte seen was "\r": a "\n" next belongs to it

    def feed(self, data: bytes) -> list[str]:
        if self._after_cr:
            self._after_cr = False
            if data.startswith(b"\n"):
                data = data[1:]
        if b"\r" in data:  # rare: servers send "\n"; make every line end in one "\n"
            self._after_cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        cut = data.rfind(b"\n")
        if cut < 0:  # the line goes on: only the new bytes were scanned, and only they are copied
            self._pending += data
            if len(self._pending) > self.max_line_bytes:
                raise too_large(self.max_line_bytes, "a line")
            return []
        if self._pending:
            data = bytes(self._pending) + data
            cut += len(self._pending)
            self._pending = bytearray()
        if cut + 1 < len(data):
            self._pending += data[cut + 1 :]
        if len(data) > self.max_line_bytes and max(map(len, data.split(b"\n"))) > self.max_line_bytes:
            raise too_large(self.max_line_bytes, "a line")
        return data[:cut].decode("utf-8", "replace").split("\n")

    def close(self) -> list[str]:
        """The last line, if the body ended without a line break."""
        line, self._pending = self._pending, bytearray()
        return [line.decode("utf-8", "replace")] if line else []
