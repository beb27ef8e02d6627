"""Tiny predict functions for ``guards.child_process`` tests: importable by a spawned child."""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable


def build_echo(prefix: str) -> Callable[[list[str]], list[str]]:
    """Each text with ``prefix`` before it; ``"pid"`` answers the child's process id, ``"fail"`` raises,
    ``"sleep"`` sleeps a minute, ``"die"`` ends the process, ``"modules"`` says whether torch or spaCy
    were imported, ``"import:NAME"`` whether NAME can be imported."""

    def predict(texts: list[str]) -> list[str]:
        if "die" in texts:
            os._exit(3)  # a crash in native code, as the parent sees it
        if "fail" in texts:
            raise ValueError("asked to fail")
        if "sleep" in texts:
            time.sleep(60)
        if "modules" in texts:
            return [",".join(m for m in ("torch", "spacy", "litestar") if m in sys.modules)] * len(texts)
        return [_answer(prefix, text) for text in texts]

    return predict


def _answer(prefix: str, text: str) -> str:
    if text == "pid":
        return str(os.getpid())
    if text.startswith("import:"):
        try:
            importlib.import_module(text.removeprefix("import:"))
        except ImportError:
            return "blocked"
        return "imported"
    return prefix + text


def build_broken(reason: str) -> Callable[[list[str]], list[str]]:
    raise FileNotFoundError(reason)
