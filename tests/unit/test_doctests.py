"""The examples in docstrings are tests too."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES_WITH_EXAMPLES = [
    "gateway.relay.fanout",
    "gateway.guarded.text_slots",
    "gateway.guarded.stream_channels",
    "gateway.relay.line_reader",
    "gateway.relay.scrub",
    "gateway.relay.upstream_shapes",
    "gateway.limits",
    "gateway.guarded.sources",
    "guards.redaction",
    "guards.pipeline",
    "guards.grounding.text",
    "guards.ip.fingerprint",
    "guards.ip.licences",
    "guards.ip.redis_store",
    "feedback.labelstudio.annotations",
    "feedback.labelstudio.config",
]


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0
