"""The configuration reference (docs/configuration.md), generated from the settings types.

The descriptions live in the types: the comment above a field of a settings struct, or at the end of
its line, is that key's meaning in the reference. ``hhh config reference --out docs/configuration.md``
writes the page; ``tests/unit/test_config_reference.py`` fails when a key has no description, or when
the page and the code disagree.
"""
