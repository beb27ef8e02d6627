"""The examples in docstrings are tests too: every module of the three packages is imported (importing has
no side effects) and each one with examples runs them."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import feedback
import gateway
import guards

# The hand-kept list this discovery replaced named 16 modules; finding fewer means discovery broke.
AT_LEAST = 16


def _modules() -> list[ModuleType]:
    modules = []
    for package in (gateway, guards, feedback):
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            if info.name.rpartition(".")[2] == "__main__":
                continue  # `python -m gateway` runs the command line: importing it is running it
            modules.append(importlib.import_module(info.name))
    return modules


def _has_examples(module: ModuleType) -> bool:
    return any(test.examples for test in doctest.DocTestFinder().find(module))


WITH_EXAMPLES = sorted(module.__name__ for module in _modules() if _has_examples(module))


def test_discovery_finds_the_examples() -> None:
    assert len(WITH_EXAMPLES) >= AT_LEAST
    assert {"feedback.preferences.pairs", "feedback.preferences.formats"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0
