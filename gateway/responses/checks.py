"""Type checks on a decoded Responses request: each failure is a 400 ``invalid_request_error`` that names
the parameter, in OpenAI's words, so a hostile or mistaken shape never reaches code that assumes one.

>>> expect_string(5, "input[0].text")
Traceback (most recent call last):
...
gateway.errors.InvalidRequest: Invalid type for 'input[0].text': expected a string, but got an integer.
>>> optional_number(True, "temperature", 0, 2)  # JSON's true is no number, though Python's bool is an int
Traceback (most recent call last):
...
gateway.errors.InvalidRequest: Invalid type for 'temperature': expected a number, but got a boolean.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import BodyTooLarge, InvalidRequest

_KINDS: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def shown(value: Any, limit: int = 60) -> str:
    """A client's value as an error message quotes it: ``repr``, cut short, so a huge value is not echoed.

    >>> shown("x" * 100, limit=8), shown("short")
    ("'xxxxxx…", "'short'")
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def name_shown(name: str, limit: int = 60) -> str:
    """A client's key or type name inside a ``param`` path, cut short likewise."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def kind(value: Any) -> str:
    """A JSON value's kind, as an error message names it."""
    return _KINDS.get(type(value), type(value).__name__)


def wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {kind(value)}.", param=param
    )


def unsupported(param: str, why: str, code: str = "unsupported_parameter") -> InvalidRequest:
    """A field the translation to chat completions cannot honour: refused rather than silently dropped."""
    return InvalidRequest(f"'{param}' is not supported by this gateway: {why}", param=param, code=code)


def only_known_keys(holder: dict[str, Any], known: frozenset[str], where: str) -> None:
    """A 400 ``unknown_parameter`` naming the first key of ``holder`` that is not in ``known``, as OpenAI
    answers one: nothing the gateway does not read reaches an upstream unjudged.

    >>> only_known_keys({"format": {}, "tone": "warm"}, frozenset({"format"}), "text")
    Traceback (most recent call last):
    ...
    gateway.errors.InvalidRequest: Unknown parameter: 'text.tone'.
    """
    for key in holder:
        if key not in known:
            named = f"{where}.{name_shown(key)}"
            raise InvalidRequest(f"Unknown parameter: '{named}'.", param=named, code="unknown_parameter")


def expect_object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise wrong_type(param, "an object", value)
    return value


def expect_list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise wrong_type(param, "an array", value)
    return value


def expect_string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise wrong_type(param, "a string", value)
    return value


def expect_name(value: Any, param: str) -> str:
    """A required identifier (a model, a function's name, a call id): a string with something in it."""
    if value is None:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    name = expect_string(value, param)
    if not name:
        raise InvalidRequest(f"Invalid value for '{param}': it must not be empty.", param=param)
    return name


def optional_string(value: Any, param: str) -> str | None:
    return None if value is None else expect_string(value, param)


def optional_bool(value: Any, param: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise wrong_type(param, "a boolean", value)
    return value


def optional_number(value: Any, param: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong_type(param, "a number", value)
    if not low <= value <= high:
        raise InvalidRequest(
            f"Invalid value for '{param}': it must be between {low} and {high}; got {value}.", param=param
        )
    return value


def optional_count(value: Any, param: str) -> int | None:
    """A positive integer (a token budget)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(param, "an integer", value)
    if value < 1:
        raise InvalidRequest(f"Invalid value for '{param}': it must be at least 1; got {value}.", param=param)
    return value


def one_of(value: Any, param: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        listed = ", ".join(f"'{choice}'" for choice in allowed)
        raise InvalidRequest(
            f"Invalid value for '{param}': expected one of {listed}; got {shown(value)}.",
            param=param,
            code="invalid_value",
        )
    return value


class Budget:
    """How many pieces (input items, their content parts beyond the first, tools) one request may have, so
    the translation's work is bounded however many tiny items a body holds. Every piece but an image part
    or a reasoning item carries a text the chat path counts against the same limit
    (``gateway.limits.check_input_budget``), so a request that budget accepts is refused here only for
    its images or reasoning items; and it is refused here before any of it is copied.

    >>> budget = Budget(2)
    >>> budget.spend(2, "input")
    >>> budget.spend(1, "tools")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gateway.errors.BodyTooLarge: The request has more than 2 input items, content parts and tools; ...
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def spend(self, count: int, param: str) -> None:
        self.spent += count
        if self.spent > self.limit:
            raise BodyTooLarge(
                f"The request has more than {self.limit:,} input items, content parts and tools; this "
                f"gateway accepts at most {self.limit:,} per request (limits.max_input_texts).",
                param=param,
                code="input_too_large",
            )
