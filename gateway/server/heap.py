"""The garbage collector in a serving gateway: what start-up loaded is frozen out of its reach.

Loading spaCy, presidio and the models leaves about half a million long-lived Python objects. A full
collection walks every one of them (0.5 to 0.65 s on a 2-core machine), and while it runs every thread
of the process waits (it holds the GIL): every stream stalls, every model batch pauses. Under 16
concurrent streams one such stall took 727 ms and landed on every request in flight.
``gc.freeze()`` once start-up is over moves those objects to a permanent generation that collections
skip; what requests make is still collected as before. Frozen objects are still freed by reference
counting; only a cycle among them would wait for ``unfreeze`` at shutdown.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Histogram

log = logging.getLogger("hhh.app")


@contextmanager
def frozen_startup_heap() -> Iterator[int]:
    """Collect once, freeze what is left (the models, the routes, the settings), and unfreeze on exit,
    so a process that starts several gateways (the test suite) does not keep the old ones' cycles."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("froze %d start-up objects out of the collector's way (%.0f ms)", frozen, _ms(started))
    try:
        yield frozen
    finally:
        gc.unfreeze()


@contextmanager
def watched_collections(pauses: Histogram) -> Iterator[None]:
    """Observe each collection's pause, by generation, while the gateway serves."""
    began: dict[str, float] = {}

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began["at"] = time.perf_counter()
        elif "at" in began:
            pauses.labels(str(info.get("generation", ""))).observe(time.perf_counter() - began.pop("at"))

    gc.callbacks.append(on_collection)
    try:
        yield
    finally:
        gc.callbacks.remove(on_collection)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
