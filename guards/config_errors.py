"""Validation errors that name the key, dictionary keys included.

msgspec reports a failure inside a mapping as ``$.guards[...].config``: it does not say which key.
``convert_or_explain`` finds the key by validating the document again with that mapping cut down to one
key at a time, and reports ``guards.pii.config``.
"""

from __future__ import annotations

import copy
import re
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")
_FIELD_REASON = re.compile(r"^([a-z_][a-z0-9_]*): (.+)$", re.S)
_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


class ConfigValidationError(ValueError):
    """Carries ``key`` (dotted, e.g. ``policies.default.input[0].action``) and ``reason``."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


def convert_or_explain(raw: Any, target: type[T], prefix: str = "") -> T:
    try:
        return msgspec.convert(raw, target)
    except msgspec.ValidationError as exc:
        reason, path = _split(exc)
        path = _name_mapping_keys(raw, target, reason, path)
        key = path.removeprefix("$").removeprefix(".")
        field = _FIELD_REASON.match(reason)  # __post_init__ names its field: "url: must ..."
        if field:
            key, reason = f"{key}.{field.group(1)}" if key else field.group(1), field.group(2)
        raise ConfigValidationError(
            ".".join(p for p in (prefix, key) if p).replace(".[", "["), reason
        ) from None


def _split(exc: msgspec.ValidationError) -> tuple[str, str]:
    reason, _, where = str(exc).rpartition(" - at `")
    if not reason:
        return str(exc), "$"
    return reason, where.rstrip("`")


def _steps(path: str) -> list[str | int]:
    return [name if name is not None and name != "" else int(index) for name, index in _SEGMENT.findall(path)]


def _name_mapping_keys(raw: Any, target: type[Any], reason: str, path: str) -> str:
    while "[...]" in path:
        cut = path.index("[...]")
        head, tail = path[:cut], path[cut + len("[...]") :]
        steps = _steps(head)
        node = raw
        try:
            for step in steps:
                node = node[step]
        except (KeyError, IndexError, TypeError):
            return path
        if not isinstance(node, dict):
            return path
        for key in node:
            trial = copy.deepcopy(raw)
            holder = trial
            for step in steps[:-1]:
                holder = holder[step]
            if steps:
                holder[steps[-1]] = {key: node[key]}
            else:
                trial = {key: node[key]}
            try:
                msgspec.convert(trial, target)
            except msgspec.ValidationError as again:
                if _split(again)[0] == reason:
                    path = f"{head}.{key}{tail}"
                    break
        else:
            return path
    return path
