"""tests.support.docs_blocks copies a benchmark's results file into the block of the page showing it,
and nothing else on the page."""

from __future__ import annotations

from pathlib import Path

from tests.support.docs_blocks import DOCS, RESULTS, block_body, blocks, write_block

PAGE = """# Performance

Before.

<!-- bench:alpha -->
old alpha table
<!-- /bench:alpha -->

Commentary on alpha stays.

<!-- bench:beta -->
beta table
<!-- /bench:beta -->
"""


def test_write_replaces_only_its_block(tmp_path: Path) -> None:
    docs, results = tmp_path / "docs", tmp_path / "results"
    docs.mkdir()
    results.mkdir()
    (docs / "performance.md").write_text(PAGE)
    (results / "alpha.md").write_text("| new | alpha |\n|---|---|\n")
    write_block("alpha", docs, results)
    text = (docs / "performance.md").read_text()
    assert "old alpha table" not in text
    assert block_body(docs / "performance.md", "alpha") == "| new | alpha |\n|---|---|\n"
    assert text.replace("| new | alpha |\n|---|---|\n", "old alpha table\n") == PAGE


def test_every_benchmark_block_in_the_docs_has_a_results_file() -> None:
    found = blocks(DOCS)
    assert "proxy_overhead" in found  # the blocks moved with their pages out of the README
    assert all((RESULTS / f"{name}.md").exists() for name in found)
