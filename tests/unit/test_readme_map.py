"""The split of the long README into the docs site lost no section: every old heading is a heading of
the page it moved to (``tests.support.readme_map``), and every page is in the site's nav. The line by
line comparison with the old README reads git history: ``python -m tests.support.readme_map --against
1813c68``."""

from __future__ import annotations

import re

import yaml

from tests.support.readme_map import ADJUSTED, ALSO, DOCS, MOVED, ROOT, headings, missing_lines


def _nav_pages(nav: object) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return {page for item in nav for page in _nav_pages(item)}
    if isinstance(nav, dict):
        return {page for value in nav.values() for page in _nav_pages(value)}
    return set()


def test_every_old_heading_is_a_heading_of_its_page() -> None:
    lost = [
        (old, page)
        for old, page in MOVED.items()
        if old not in {text for _, text in headings((DOCS / page).read_text())}
    ]
    assert not lost, f"old README headings missing from their pages: {lost}"


def test_every_page_a_section_went_to_is_in_the_nav() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)  # no python tags
    pages = {*MOVED.values(), *(page for pages in ALSO.values() for page in pages)}
    assert pages <= _nav_pages(config["nav"])


def test_a_lost_line_is_reported() -> None:
    # The line check must be able to fail: a sentence no page holds is reported under its section.
    old = "## Recording traffic\n\nEvery event is also written to a fax machine.\n"
    assert missing_lines(old) == {"Recording traffic": ["Every event is also written to a fax machine."]}


def test_the_readme_links_only_to_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", readme)
    broken = [t for t in targets if not t.startswith(("http://", "https://")) and not (ROOT / t).exists()]
    assert targets
    assert not broken, broken


def test_every_adjusted_line_says_what_replaced_it_and_the_pages_hold_that() -> None:
    pages = "\n".join(path.read_text() for path in DOCS.rglob("*.md"))
    assert all(replacement in pages for replacement in ADJUSTED.values())
