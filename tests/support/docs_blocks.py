"""Benchmark results into the docs pages that show them.

A benchmark writes its table to ``tests/benchmarks/results/NAME.md``; the page that shows it holds the
table between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` (the blocks used to live in the
README; they moved with their pages into docs/). ``python -m tests.support.docs_blocks`` lists every
block, its page and whether it matches its results file; ``--write NAME`` replaces that block's content
with the results file (commentary belongs after the end marker, so a rewrite keeps it).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RESULTS = ROOT / "tests" / "benchmarks" / "results"

BLOCK = re.compile(r"(<!-- bench:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.S)


def blocks(docs: Path = DOCS) -> dict[str, Path]:
    """Benchmark name -> the page holding its block."""
    found: dict[str, Path] = {}
    for page in sorted(docs.rglob("*.md")):
        for match in BLOCK.finditer(page.read_text()):
            found[match.group("name")] = page
    return found


def block_body(page: Path, name: str) -> str:
    for match in BLOCK.finditer(page.read_text()):
        if match.group("name") == name:
            return match.group("body")
    raise KeyError(name)


def write_block(name: str, docs: Path = DOCS, results: Path = RESULTS) -> Path:
    """Put results/NAME.md between the block's markers; returns the page written."""
    page = blocks(docs).get(name)
    if page is None:
        raise SystemExit(f"no <!-- bench:{name} --> block in any page under {docs}")
    table = (results / f"{name}.md").read_text().strip() + "\n"
    text = page.read_text()

    def replace(match: re.Match[str]) -> str:
        if match.group("name") != name:
            return match.group(0)
        return match.group(1) + table + match.group(4)

    page.write_text(BLOCK.sub(replace, text))
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", metavar="NAME", action="append", default=[], help="benchmark to copy in")
    args = parser.parse_args(argv)
    for name in args.write:
        print(f"{name}: wrote {write_block(name).relative_to(ROOT)}")
    for name, page in blocks().items():
        result = RESULTS / f"{name}.md"
        if not result.exists():
            state = "no results file"
        elif block_body(page, name).strip() == result.read_text().strip():
            state = "matches its results file"
        else:
            state = "differs from its results file (edited by hand, or not yet copied in)"
        print(f"{name:24} {page.relative_to(ROOT)}: {state}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
