"""Guard and policy configuration: validated at start-up, with errors that name the key."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.settings import ConfigError, settings_from_mapping
from guards.policy import Action, Policy, PolicyBook, PolicyError, Rule, TenantPolicies
from tests.support.fake_guards import EmailGuard, WordGuard

FAKES = {"toxicity": WordGuard(), "pii": EmailGuard()}


def _app(raw: dict[str, Any]) -> None:
    create_app(settings_from_mapping(raw, environ={}), guards=FAKES)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"policies": {"default": {"input": [{"guard": "nope"}]}}}, "policies.default.input[0].guard"),
        (
            {"policies": {"tenants": {"acme": {"models": {"m": {"output": [
                {"guard": "pii", "thresholds": {"X": 1}}]}}}}}},
            "policies.tenants.acme.models.m.output[0].thresholds",
        ),
        ({"policies": {"default": {"input": [{"guard": "toxicity", "thresholds": {"toxicity": 2}}]}}},
         "policies.default.input[0].thresholds.toxicity"),
    ],
)  # fmt: skip
def test_policy_errors_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(PolicyError) as caught:
        _app(raw)
    assert str(caught.value).startswith(key), str(caught.value)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"policies": {"default": {"input": [{"guard": "toxicity", "action": "shout"}]}}},
         "policies.default.input[0].action"),
        ({"policies": {"default": {"stream": {"min_chars": 500, "max_chars": 100}}}},
         "policies.default.stream"),
        ({"policies": {"models": {"gpt-x": {"output": [{"guard": "pii", "on_error": "maybe"}]}}}},
         "policies.models.gpt-x.output[0].on_error"),
        ({"policies": {"default": {"inputs": []}}}, "policies.default"),
        ({"guards": {"pii": {"typ": "pii"}}}, "guards.pii"),
    ],
)  # fmt: skip
def test_schema_errors_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(raw, environ={})
    assert str(caught.value).startswith(key), str(caught.value)


def test_unknown_guard_type_and_bad_guard_config_are_named() -> None:
    from guards.registry import GuardResources, build_guards
    from guards.runner import RunnerPool

    resources = GuardResources(RunnerPool(), None, __import__("pathlib").Path("/tmp"))
    settings = settings_from_mapping({"guards": {"x": {"type": "telepathy"}}}, environ={})
    with pytest.raises(PolicyError, match=r"^guards\.x\.type: unknown guard type 'telepathy'"):
        build_guards(settings.guards, resources)
    settings = settings_from_mapping(
        {"guards": {"p": {"type": "pii", "config": {"entities": {"PERSON": "zap"}}}}}, environ={}
    )
    with pytest.raises(PolicyError, match=r"^guards\.p\.config\.entities\.PERSON"):
        build_guards(settings.guards, resources)


def test_policy_resolution_order() -> None:
    book = PolicyBook(
        default=Policy(input=[Rule(guard="a")]),
        models={"m": Policy(input=[Rule(guard="b")])},
        tenants={
            "t": TenantPolicies(
                default=Policy(input=[Rule(guard="c")]), models={"m": Policy(input=[Rule(guard="d")])}
            )
        },
    )
    assert book.resolve("t", "m")[0] == "tenants.t.models.m"
    assert book.resolve("t", "other")[0] == "tenants.t.default"
    assert book.resolve("u", "m")[0] == "models.m"
    assert book.resolve("u", "other")[0] == "default"


def test_the_default_is_protected() -> None:
    settings = settings_from_mapping({}, environ={})
    policy = settings.policies.default
    assert [(r.guard, r.action) for r in policy.input] == [("toxicity", Action.BLOCK), ("pii", Action.REDACT)]
    assert [(r.guard, r.action) for r in policy.output] == [
        ("toxicity", Action.BLOCK),
        ("pii", Action.REDACT),
    ]


def test_the_shipped_policy_file_reproduces_the_default() -> None:
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "default-policy.yaml"
    shipped = settings_from_mapping(yaml.safe_load(path.read_text()), environ={})
    default = settings_from_mapping({}, environ={})
    assert shipped.guards == default.guards
    assert shipped.policies == default.policies
