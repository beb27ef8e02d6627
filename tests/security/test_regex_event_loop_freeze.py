"""Threat: one request freezes the whole server with text that makes a parser quadratic.

The ``<document>`` pattern searched from every opening tag to the end of the text, on the event loop:
``"<document>"`` repeated 12,000 times (120 KB) kept a concurrent ``/health`` waiting 12.4 s. Parsing must
cost about the same for hostile text as for normal text of the same size (a ratio measured in the same
test, so the machine's speed does not matter)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway.guarded.sources import request_sources

SIZE = 60_000  # characters (the report used 120,000: 12.4 s)
# Linear parsing keeps hostile text within a few times normal text; the quadratic pattern was over a
# thousand times slower at this size. The bound is generous so that a busy machine never flakes it.
MAX_RATIO = 25


def _chat(text: str) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}]}


def _sized(unit: str) -> str:
    return (unit * (SIZE // len(unit) + 1))[:SIZE]


def _best_seconds(parse: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        parse()
        best = min(best, time.perf_counter() - started)
    return best


NORMAL = _sized('<document id="d" title="A title">Some retrieved text, a sentence or two.</document>\n')
HOSTILE = {
    "opening tags never closed": _sized("<document>"),
    "opening tags without a closing bracket": _sized("<document"),
    "one attribute name as long as the text": "<document " + _sized("a") + ">text</document>",
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_markup_built_to_make_the_parser_quadratic_costs_about_as_much_as_normal_text(case: str) -> None:
    normal = _best_seconds(lambda: request_sources(_chat(NORMAL)))
    hostile = _best_seconds(lambda: request_sources(_chat(HOSTILE[case])))
    assert hostile <= MAX_RATIO * max(normal, 1e-3), f"{case}: {hostile:.3f} s vs {normal:.4f} s"
