"""Guard types, declared in one table and imported only when a configuration uses them (so a gateway
without the PII guard never imports spaCy)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import msgspec

from guards.config_errors import ConfigValidationError, convert_or_explain
from guards.metrics import GuardMetrics
from guards.policy import GuardSpec, PolicyError
from guards.protocol import Guard
from guards.runner import RunnerPool

GUARD_TYPES: dict[str, str] = {
    "toxicity": "guards.toxicity:ToxicityGuard",
    "pii": "guards.pii:PiiGuard",
    "grounding": "guards.grounding.guard:GroundingGuard",
    "ip": "guards.ip.guard:IpGuard",
    "reward": "guards.reward:RewardGuard",
    "prompt_injection": "guards.injection:InjectionGuard",
    "safety_llm": "guards.safety_llm:SafetyLlmGuard",
}


class GuardResources(msgspec.Struct):
    """What guards share: the model runners, the metrics, a directory for files they keep."""

    runners: RunnerPool
    metrics: GuardMetrics | None
    data_dir: Path


def guard_class(kind: str, key: str) -> type[Guard]:
    target = GUARD_TYPES.get(kind)
    if target is None:
        raise PolicyError(f"{key}: unknown guard type {kind!r} (known: {', '.join(sorted(GUARD_TYPES))})")
    module_name, _, class_name = target.partition(":")
    cls: type[Guard] = getattr(importlib.import_module(module_name), class_name)
    return cls


def build_guards(specs: dict[str, GuardSpec], resources: GuardResources) -> dict[str, Guard]:
    """Instantiate every configured guard; config errors name ``guards.<name>.config.<key>``."""
    guards: dict[str, Guard] = {}
    for name, spec in specs.items():
        cls = guard_class(spec.type, f"guards.{name}.type")
        try:
            config = convert_or_explain(spec.config, cls.config_type, prefix=f"guards.{name}.config")
        except ConfigValidationError as exc:
            raise PolicyError(str(exc)) from None
        factory: Any = cls
        guards[name] = factory(name, config, resources)
    return guards
