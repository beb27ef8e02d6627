"""Keeping an upstream's API key out of everything relayed to clients.

An upstream may echo the headers it received (a debugging proxy, a misconfigured server): its error
body would then show the client ``Authorization: Bearer <the upstream key>``. Every body, error and
stream line the gateway relays from that upstream goes through its scrubber first.

>>> scrub = Scrubber("sk-upstream-secret")
>>> scrub.text("Invalid header: Bearer sk-upstream-secret"), scrub.bytes(b"no secret here")
('Invalid header: Bearer [REDACTED]', b'no secret here')
>>> Scrubber("EMPTY").text("EMPTY")  # a placeholder, not a secret: "EMPTY" in an answer is left alone
'EMPTY'
"""

from __future__ import annotations

REDACTED = "[REDACTED]"
# Shorter "keys" are placeholders (vLLM's "EMPTY", "none"); replacing them would garble answers.
MIN_SECRET_CHARS = 8


class Scrubber:
    def __init__(self, secret: str | None) -> None:
        self._secret = secret if secret and len(secret) >= MIN_SECRET_CHARS else None
        self._secret_bytes = self._secret.encode() if self._secret else b""

    def text(self, text: str) -> str:
        if self._secret and self._secret in text:
            return text.replace(self._secret, REDACTED)
        return text

    def bytes(self, data: bytes) -> bytes:
        if self._secret_bytes and self._secret_bytes in data:
            return data.replace(self._secret_bytes, REDACTED.encode())
        return data
