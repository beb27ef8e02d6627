"""Threat: a suite that fails on a slower machine, so CI is ignored or switched off (issue 11, item 26).

``x-hhh-overhead-ms < 50`` failed 2 runs of 2 on a fresh clone (61 ms and 53 ms). How much overhead the
gateway adds is measured in tests/benchmarks; tests only check that the header is there and a number.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _bounds_on_overhead(tree: ast.AST) -> list[str]:
    """Assertions comparing an overhead figure with a positive constant (a wall-clock bound)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        for compare in ast.walk(node.test):
            if not isinstance(compare, ast.Compare):
                continue
            operands = [compare.left, *compare.comparators]
            timed = any("overhead" in ast.unparse(operand) for operand in operands)
            positive = any(
                isinstance(operand, ast.Constant)
                and isinstance(operand.value, int | float)
                and operand.value > 0
                for operand in operands
            )
            if timed and positive:
                found.append(ast.unparse(node))
    return found


def test_no_test_outside_benchmarks_bounds_the_overhead_header_in_milliseconds() -> None:
    offenders = {
        str(path.relative_to(TESTS)): bounds
        for path in sorted(TESTS.rglob("test_*.py"))
        if "benchmarks" not in path.parts
        and (bounds := _bounds_on_overhead(ast.parse(path.read_text(), str(path))))
    }
    assert offenders == {}


def test_the_check_itself_catches_a_bound() -> None:
    tree = ast.parse('assert float(raw.headers["x-hhh-overhead-ms"]) < 50')
    assert _bounds_on_overhead(tree)
    assert not _bounds_on_overhead(ast.parse('assert float(raw.headers["x-hhh-overhead-ms"]) >= 0'))
