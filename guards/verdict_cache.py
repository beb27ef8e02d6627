"""Input verdicts kept per tenant, so a conversation's earlier messages are judged once, not every turn.

A chat client sends the whole conversation with every turn: without this, turn k judges all k earlier
messages again, and the input guards' work (spaCy on every message, for PII) grows with the square of a
conversation's length while each new turn waits for it.

Only guards whose verdict depends on nothing but the text, the rule's thresholds and its categories
(``Guard.context_free``: toxicity, PII) are cached, and only on input. The key holds the tenant: one
tenant's entry is never another's, so how fast a text is judged tells a client nothing about what other
tenants sent (a shared cache would let a client probe for a known e-mail address or name by timing).
Texts are kept as SHA-256 digests; the verdicts (which may hold a redacted copy of a text) are bounded in
entries and in characters, least recently used first out.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import msgspec

from guards.verdict import Verdict


class VerdictCache:
    def __init__(
        self, max_entries: int = 4096, max_chars: int = 4_000_000, max_text_chars: int = 32_768
    ) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.max_text_chars = max_text_chars  # longer texts are judged every time (and not held)
        self._entries: OrderedDict[bytes, tuple[Verdict, int]] = OrderedDict()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chars(self) -> int:
        return self._chars

    def key(
        self,
        tenant: str,
        guard: str,
        thresholds: Mapping[str, float],
        categories: Sequence[str] | None,
        text: str,
    ) -> bytes | None:
        """The entry's key, or None for a text not worth keeping (too long, or no tenant to scope it)."""
        if not tenant or not self.max_entries or len(text) > self.max_text_chars:
            return None
        scope = msgspec.json.encode(
            [tenant, guard, sorted(thresholds.items()), None if categories is None else sorted(categories)]
        )
        return hashlib.sha256(scope + b"\0" + text.encode("utf-8", "surrogatepass")).digest()

    def get(self, key: bytes) -> Verdict | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: bytes, verdict: Verdict) -> None:
        size = _size(verdict)
        if size > self.max_chars:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._chars -= old[1]
        self._entries[key] = (verdict, size)
        self._chars += size
        while len(self._entries) > self.max_entries or self._chars > self.max_chars:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._chars -= dropped


def _size(verdict: Verdict) -> int:
    """About what an entry holds, in characters: its redacted text, spans and evidence."""
    return 256 + len(verdict.rewritten or "") + 64 * (len(verdict.spans) + len(verdict.evidence))
