"""Child processes (the embedded Redis, the embedded LLM) that end with the gateway, however it ends."""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the gateway dies, even by SIGKILL;
    None elsewhere (there, only the normal shutdown path stops children)."""
    if not sys.platform.startswith("linux"):
        return None

    def set_death_signal() -> None:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_death_signal
