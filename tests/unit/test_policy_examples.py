"""The policy examples in deploy/examples/ load, and each says what it claims (issue 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gateway.app import create_app
from gateway.settings import Settings, settings_from_mapping
from guards.pii import EntityAction, PiiConfig
from guards.policy import CONTEXT_FREE_PII, Action
from tests.support.fake_guards import NameAndEmailGuard, WordGuard

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
ENVIRON = {"HHH_PII_SALT": "a-salt-for-the-test"}


def _load(name: str) -> Settings:
    settings = settings_from_mapping(yaml.safe_load((EXAMPLES / name).read_text()), environ=ENVIRON)
    guards: dict[str, Any] = {"toxicity": WordGuard(), "pii": NameAndEmailGuard()}
    create_app(settings, guards=guards)  # the policies' references check out
    return settings


def _pii(settings: Settings) -> PiiConfig:
    import msgspec

    return msgspec.convert(settings.guards["pii"].config, PiiConfig)


def test_helpful_default_is_the_built_in_default() -> None:
    shipped = _load("policy-helpful-default.yaml")
    default = settings_from_mapping({}, environ={})
    assert shipped.guards == default.guards
    assert shipped.policies == default.policies
    [output_pii] = [r for r in shipped.policies.default.output if r.guard == "pii"]
    assert output_pii.categories == list(CONTEXT_FREE_PII)


def test_privacy_strict_redacts_everything_both_ways_without_restore() -> None:
    settings = _load("policy-privacy-strict.yaml")
    policy = settings.policies.default
    for rule in policy.input + policy.output:
        if rule.guard == "pii":
            assert rule.action is Action.REDACT
            assert rule.categories is None  # every entity, names included
    assert _pii(settings).entities["PERSON"] is EntityAction.REDACT
    [input_pii] = [r for r in policy.input if r.guard == "pii"]
    assert getattr(input_pii, "restore") is False  # noqa: B009 - the field lands with fix/vault


def test_support_desk_hashes_pseudonyms_with_a_salt_from_the_environment() -> None:
    settings = _load("policy-support-desk.yaml")
    config = _pii(settings)
    assert config.entities["PERSON"] is EntityAction.HASH
    assert config.entities["EMAIL_ADDRESS"] is EntityAction.HASH
    assert config.hash_salt == "a-salt-for-the-test"
    assert "support@example.com" in config.allow_list
    [output_pii] = [r for r in settings.policies.default.output if r.guard == "pii"]
    assert output_pii.categories is None
