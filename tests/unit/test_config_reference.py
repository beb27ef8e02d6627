"""docs/configuration.md is generated from the settings types (``hhh config reference``): every key in
code has a meaning there, and nothing there is a key that code does not have."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.reference.build import configuration_reference, reference_groups, reference_keys

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
REGENERATE = "run: python -m gateway config reference --out docs/configuration.md"


def documented_keys(text: str) -> set[tuple[str, str]]:
    """(section heading, key) for every row of the page's key tables."""
    keys: set[tuple[str, str]] = set()
    heading = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
        elif heading is not None and (row := re.match(r"^\| `([^`]+)` \|", line)):
            keys.add((heading, row.group(1)))
    return keys


def test_every_key_in_code_has_a_description() -> None:
    _, undocumented = reference_groups()
    assert undocumented == [], "add a comment above these fields in their settings struct"


def test_every_key_in_code_is_in_the_reference() -> None:
    missing = reference_keys() - documented_keys(REFERENCE.read_text())
    assert not missing, f"keys in code but not in docs/configuration.md: {sorted(missing)}; {REGENERATE}"


def test_every_key_in_the_reference_is_in_code() -> None:
    stale = documented_keys(REFERENCE.read_text()) - reference_keys()
    assert not stale, f"keys in docs/configuration.md that code does not have: {sorted(stale)}; {REGENERATE}"


def test_the_reference_is_what_the_types_generate() -> None:
    assert REFERENCE.read_text() == configuration_reference(), f"docs/configuration.md is stale; {REGENERATE}"


def test_a_key_missing_from_the_page_is_caught() -> None:
    # The parser must see rows, or the two checks above would pass on an empty page.
    text = REFERENCE.read_text()
    keys = documented_keys(text)
    assert ("`server`", "port") in keys
    without = text.replace("| `port` |", "| port |", 1)
    assert ("`server`", "port") not in documented_keys(without)


def test_the_command_writes_the_page_and_its_check_catches_a_stale_one(tmp_path: Path) -> None:
    from gateway.cli.main import main

    out = tmp_path / "configuration.md"
    assert main(["config", "reference", "--out", str(out), "--check"]) == 1  # no page yet
    assert main(["config", "reference", "--out", str(out)]) == 0
    assert out.read_text() == configuration_reference()
    assert main(["config", "reference", "--out", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace("| `port` |", "| `prot` |"))
    assert main(["config", "reference", "--out", str(out), "--check"]) == 1
