"""The reference's content: the gateway's settings tree, then each guard type's config."""

from __future__ import annotations

from gateway.reference.render import Section, collect, fill_rows, render
from gateway.settings import Settings
from guards.registry import GUARD_TYPES, guard_class

GUARDS_TITLE = """\
# Guard configs

`guards.<name>.config` is read by the guard's type (`guards.<name>.type`): the keys below, per type.
An unknown key fails at start-up, naming it."""


def reference_groups() -> tuple[list[tuple[str, dict[type, Section]]], list[str]]:
    """The sections, grouped, and the keys that lack a description."""
    settings = collect(Settings)
    guard_sections: dict[type, Section] = {}
    for kind in GUARD_TYPES:
        config = guard_class(kind, "guards.<name>.type").config_type
        collect(config, "guards.<name>.config", f"guard type `{kind}`", guard_sections)
    undocumented = fill_rows(settings) + fill_rows(guard_sections)
    return [("", settings), (GUARDS_TITLE, guard_sections)], undocumented


def configuration_reference() -> str:
    groups, _ = reference_groups()
    return render(groups)


def reference_keys() -> set[tuple[str, str]]:
    """(section heading, key) for every key in code."""
    groups, _ = reference_groups()
    return {(s.heading, row.key) for _, sections in groups for s in sections.values() for row in s.rows}
