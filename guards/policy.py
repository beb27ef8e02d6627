"""Policy as data: which guards run at which stage, with what thresholds, action and fail mode.

Resolution for a request, most specific first: ``tenants.<tenant>.models.<model>``,
``tenants.<tenant>.default``, ``models.<model>``, ``default``. A policy found is used whole (no
merging), so what applies is always one readable block of YAML.

A client may tighten its policy per request (``"guardrails": {...}`` in the body) but never loosen it:
see ``tighten``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any

import msgspec

from guards.config_errors import ConfigValidationError, convert_or_explain
from guards.verdict import Stage


class PolicyError(ValueError):
    """A policy is wrong; the message starts with the key (or request parameter) at fault."""


class Action(StrEnum):
    FLAG = "flag"  # report only
    ANNOTATE = "annotate"  # report, and append the policy's disclaimer to the answer
    REDACT = "redact"  # replace the offending spans; a guard that cannot rewrite blocks instead
    TRUNCATE = "truncate"  # output: cut the answer before the first offending span
    # Output: a critic model critiques the answer against a constitution and revises it; the revision is
    # checked again, and the rule's ``fallback`` applies to the original when that fails.
    REVISE = "revise"
    BLOCK = "block"  # refuse: 400 on input, a content_filter choice on output

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


# Revise sits below block: a request may turn a revise rule into block, never a block rule into revise.
_SEVERITY = {
    Action.FLAG: 0,
    Action.ANNOTATE: 1,
    Action.REDACT: 2,
    Action.TRUNCATE: 3,
    Action.REVISE: 4,
    Action.BLOCK: 5,
}


class Grade(str):
    """A guard category that grades an answer (a reward model's score) rather than finds harm in it. A
    guard lists it among its ``categories``, which is how ``check_references`` and ``tighten`` know it.

    Its threshold is a floor: a score *below* it flags (harm categories flag at or above theirs), on the
    model's own scale (any finite number: a logit, not a probability). A rule on a guard that only grades
    judges output, only flags or annotates (a low grade is no reason to withhold an answer), and fails
    open (nor is a grader's failure). A request may raise a floor, never lower it.
    """

    __slots__ = ()


GRADE_ACTIONS = frozenset({"flag", "annotate"})


def grades_only(categories: Collection[str]) -> bool:
    """Whether a guard with these categories only grades (see ``Grade``)."""
    return bool(categories) and all(isinstance(category, Grade) for category in categories)


def grade_names(categories: Collection[str]) -> frozenset[str]:
    """Which of a guard's categories are grades."""
    return frozenset(str(category) for category in categories if isinstance(category, Grade))


class FailMode(StrEnum):
    OPEN = "open"  # a guard that errs or times out lets the text through (reported)
    CLOSED = "closed"  # ... or refuses it


class StreamMode(StrEnum):
    BUFFER = "buffer"  # nothing reaches the client before its window passed
    STREAM_FIRST = "stream_first"  # text goes out at once; a violation stops the choice within a window


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class Revision(_Strict):
    """How a ``revise`` rule revises: its critic, rounds, budget, and what applies when revising fails."""

    critic_model: str | None = None  # a model name routed like any request; None: the request's own
    max_rounds: int = 1  # critique + revision + re-check, at most this many times
    fallback: Action = Action.BLOCK  # applied to the original answer when no revision passes
    # The whole revision of one answer (every round: critic calls and re-checks). ``timeout_ms`` stays the
    # guard's own time-out: a critic needs seconds where a guard needs milliseconds.
    timeout_ms: int = 20_000
    max_tokens: int = 512  # per critic call
    constitution: str | None = None  # a YAML file of principles; None: the built-in one

    def __post_init__(self) -> None:
        if not 1 <= self.max_rounds <= MAX_REVISION_ROUNDS:
            raise ValueError(f"max_rounds: must be between 1 and {MAX_REVISION_ROUNDS}")
        if self.fallback is Action.REVISE:
            raise ValueError("fallback: must be block, truncate, redact, annotate or flag, not revise")
        if self.timeout_ms <= 0:
            raise ValueError("timeout_ms: must be positive")
        if self.max_tokens <= 0:
            raise ValueError("max_tokens: must be positive")


MAX_REVISION_ROUNDS = 5


class Rule(_Strict):
    # A guard's name, as configured under `guards`.
    guard: str
    # block, redact, flag, annotate, and on output truncate or revise.
    action: Action = Action.BLOCK
    # Per category; categories left out use the guard's defaults.
    thresholds: dict[str, float] = {}
    # The guard's own time-out; beyond it, on_error applies.
    timeout_ms: int = 2000
    # closed: input answers 503 guard_unavailable, output withholds the choice; open: the text passes and the
    # report shows the error.
    on_error: FailMode = FailMode.CLOSED
    # Which of the guard's categories count for this rule: the others neither flag nor redact.
    # None (the default): all of them.
    categories: list[str] | None = None
    # Input redact rules: the placeholders this rule writes (``<PERSON_1>``) are put back in the answer
    # the client gets (never in what is recorded or sent upstream). Off: placeholders stay.
    restore: bool = True
    # ``revise`` rules only: how they revise (None: the defaults of ``Revision``).
    revision: Revision | None = None

    @property
    def revising(self) -> Revision:
        return self.revision or Revision()


class StreamPolicy(_Strict):
    # buffer: no character reaches the client before its window passed; stream_first: text goes out at once
    # and a violation stops the choice within one window.
    mode: StreamMode = StreamMode.BUFFER
    # A window ends at a sentence end once it holds min_chars, or at max_chars.
    min_chars: int = 24
    # A window is cut here when no sentence has ended (see min_chars).
    max_chars: int = 400
    # Characters of context carried from one window into the next, so what crosses a boundary is seen
    # whole; it bounds what a forced cut (no sentence end) can split.
    overlap_chars: int = 64
    # How long a window after a text's first may wait for other streams' windows to share one model call,
    # while the guards are ahead of the upstream (none of the answer's next text has come yet). At an
    # LLM's pace the reader is still reading what came before, and windows checked together cost a
    # fraction of the CPU each. 0: never wait. A text's first window, its tail (checked once the answer
    # ended) and input checks never wait.
    patience_ms: float = 50.0

    def __post_init__(self) -> None:
        if not 0 < self.min_chars <= self.max_chars:
            raise ValueError("min_chars must be positive and at most max_chars")
        if not 0 <= self.overlap_chars < self.max_chars:
            raise ValueError("overlap_chars must be below max_chars")
        if not 0 <= self.patience_ms <= 1000:
            raise ValueError("patience_ms must be between 0 and 1000")


DEFAULT_DISCLAIMER = (
    "\n\n[Note from the gateway: automated checks flagged parts of this answer; verify before relying on it.]"
)
DEFAULT_REFUSAL = "This answer was withheld by the gateway's {guard} guard ({categories})."


MIN_BEST_OF_N, MAX_BEST_OF_N = 2, 16
# What may happen to a best-of-n answer whose reward is below ``min_reward``.
REWARD_ACTIONS = (Action.FLAG, Action.ANNOTATE, Action.BLOCK)


class BestOfN(_Strict):
    """Best-of-n sampling: each choice the client gets is the best of ``n`` answers drawn at
    ``temperature``, by a reward model's score, among those the output guards pass
    (``gateway.guarded.best_of_n``)."""

    reward_model: str  # a directory saved by ``hhh feedback train-reward``, or a Hugging Face id or path
    # Answers drawn per choice (2 to 16).
    n: int = 4
    temperature: float = 0.8  # replaces the client's: n answers alike would leave nothing to choose
    min_reward: float | None = None  # a best answer scored below it gets ``action``
    action: Action = Action.FLAG  # flag, annotate or block
    timeout_ms: int = 10_000  # scoring a request's candidates; beyond it the reward model counts as failed

    def __post_init__(self) -> None:
        if not MIN_BEST_OF_N <= self.n <= MAX_BEST_OF_N:
            raise ValueError(f"n: must be between {MIN_BEST_OF_N} and {MAX_BEST_OF_N}, not {self.n}")
        if not self.reward_model.strip():
            raise ValueError("reward_model: must name a reward model (a directory or a model id)")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature: must be between 0 and 2, not {self.temperature}")
        if self.action not in REWARD_ACTIONS:
            raise ValueError(f"action: must be flag, annotate or block, not {self.action.value!r}")
        if self.timeout_ms <= 0:
            raise ValueError("timeout_ms: must be positive")
        if self.min_reward is not None and not math.isfinite(self.min_reward):
            raise ValueError("min_reward: must be a finite number or null")


class Policy(_Strict):
    input: list[Rule] = []
    output: list[Rule] = []
    stream: StreamPolicy = msgspec.field(default_factory=StreamPolicy)
    # What `annotate` appends to an answer.
    disclaimer: str = DEFAULT_DISCLAIMER
    # The refusal a blocked output choice carries; {guard} and {categories} are filled in.
    refusal: str = DEFAULT_REFUSAL
    best_of_n: BestOfN | None = None  # None: one answer per choice, as the upstream gives it

    def rules(self, stage: Stage) -> list[Rule]:
        return self.input if stage is Stage.INPUT else self.output


class TenantPolicies(_Strict):
    # This tenant's policy for every model without one of its own (None: the book's).
    default: Policy | None = None
    # This tenant's policies per model.
    models: dict[str, Policy] = {}


class GuardSpec(_Strict):
    # The guard's type: toxicity, pii, grounding, ip, reward or prompt_injection.
    type: str
    # The type's own settings: see Guard configs below.
    config: dict[str, Any] = {}


def default_guards() -> dict[str, GuardSpec]:
    return {"toxicity": GuardSpec(type="toxicity"), "pii": GuardSpec(type="pii")}


# What leaks private data whatever the context: redacted from answers by default. Names, places and
# dates are left out: in an answer they are mostly general knowledge ("Hamlet was written by William
# Shakespeare"), and a request or a policy can add them (``categories: [PERSON, ...]``).
CONTEXT_FREE_PII = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "US_BANK_NUMBER",
    "US_PASSPORT",
    "IP_ADDRESS",
    "CRYPTO",
)


def default_policy() -> Policy:
    """Protected out of the box: toxicity blocks both ways; PII is redacted on the way in, and on the
    way out only what is private whatever the context (``CONTEXT_FREE_PII``: not person names)."""
    return Policy(
        input=[Rule(guard="toxicity", action=Action.BLOCK), Rule(guard="pii", action=Action.REDACT)],
        output=[
            Rule(guard="toxicity", action=Action.BLOCK),
            Rule(guard="pii", action=Action.REDACT, categories=list(CONTEXT_FREE_PII)),
        ],
    )


class PolicyBook(_Strict):
    # The policy when nothing more specific applies: toxicity blocked both ways, PII redacted.
    default: Policy = msgspec.field(default_factory=default_policy)
    # Policies per model, for every tenant without its own.
    models: dict[str, Policy] = {}
    # Policies per tenant: `tenants.<tenant>.models.<model>`, else `tenants.<tenant>.default`, else
    # `models.<model>`, else `default`.
    tenants: dict[str, TenantPolicies] = {}

    def resolve(self, tenant: str, model: str) -> tuple[str, Policy]:
        """The policy for this tenant and model, with a name that says where it came from."""
        scoped = self.tenants.get(tenant)
        if scoped is not None:
            if model in scoped.models:
                return f"tenants.{tenant}.models.{model}", scoped.models[model]
            if scoped.default is not None:
                return f"tenants.{tenant}.default", scoped.default
        if model in self.models:
            return f"models.{model}", self.models[model]
        return "default", self.default

    def named_policies(self) -> list[tuple[str, Policy]]:
        found = [("policies.default", self.default)]
        found += [(f"policies.models.{m}", p) for m, p in self.models.items()]
        for tenant, scoped in self.tenants.items():
            if scoped.default is not None:
                found.append((f"policies.tenants.{tenant}.default", scoped.default))
            found += [(f"policies.tenants.{tenant}.models.{m}", p) for m, p in scoped.models.items()]
        return found


def check_references(
    book: PolicyBook,
    guards: dict[str, GuardSpec],
    categories: dict[str, set[str]],
    min_overlaps: dict[str, int] | None = None,
) -> None:
    """Every rule names a configured guard and known categories (thresholds, ``categories``); stream
    windows overlap enough for the output guards that need it (the IP guard: a copy across a cut must
    still show).

    The built-in default policy is spared the ``categories`` check: it names the default PII guard's
    entities, and with a PII guard configured with fewer it counts those the guard has.
    """
    builtin = default_policy()
    for where, policy in book.named_policies():
        for rule in policy.output:
            needed = (min_overlaps or {}).get(rule.guard, 0)
            if policy.stream.overlap_chars < needed:
                raise PolicyError(
                    f"{where}.stream.overlap_chars: must be at least {needed} for guard {rule.guard!r} "
                    f"(its min_match_chars), not {policy.stream.overlap_chars}"
                )
        for stage in Stage:
            for index, rule in enumerate(policy.rules(stage)):
                key = f"{where}.{stage.value}[{index}]"
                _check_revise(policy, stage, rule, key, where)
                if rule.guard not in guards:
                    known = ", ".join(sorted(guards)) or "none"
                    raise PolicyError(f"{key}.guard: no guard named {rule.guard!r} (configured: {known})")
                own = categories.get(rule.guard, set())
                unknown = set(rule.thresholds) - own
                if unknown:
                    raise PolicyError(
                        f"{key}.thresholds: unknown categor{'ies' if len(unknown) > 1 else 'y'} "
                        f"{', '.join(sorted(unknown))} for guard {rule.guard!r}"
                    )
                grades = grade_names(own)
                for category, value in rule.thresholds.items():
                    if category in grades:
                        if not math.isfinite(value):
                            raise PolicyError(f"{key}.thresholds.{category}: must be a finite number")
                    elif not 0.0 <= value <= 1.0:
                        raise PolicyError(f"{key}.thresholds.{category}: must be between 0 and 1")
                if grades_only(own):
                    _check_grading(rule, stage, key)
                if policy != builtin:
                    _check_categories(rule.categories, categories.get(rule.guard, set()), rule.guard, key)


def _check_revise(policy: Policy, stage: Stage, rule: Rule, key: str, where: str) -> None:
    """``revise`` is for output rules, in buffer mode (withheld text can still be replaced); its
    ``revision`` settings belong to it alone."""
    if rule.action is not Action.REVISE:
        if rule.revision is not None:
            raise PolicyError(f"{key}.revision: only for action 'revise', not {rule.action.value!r}")
        return
    if stage is Stage.INPUT:
        raise PolicyError(f"{key}.action: 'revise' is for output rules only (a request is not revised)")
    if policy.stream.mode is StreamMode.STREAM_FIRST:
        raise PolicyError(
            f"{key}.action: revise needs buffer mode ({where}.stream.mode is 'stream_first': released "
            "text cannot be revised)"
        )


def _check_grading(rule: Rule, stage: Stage, key: str) -> None:
    """A rule on a guard that only grades answers: output, flag or annotate, fail open (see ``Grade``)."""
    if stage is Stage.INPUT:
        raise PolicyError(f"{key}.guard: guard {rule.guard!r} grades answers: it is for output rules only")
    if rule.action.value not in GRADE_ACTIONS:
        raise PolicyError(
            f"{key}.action: guard {rule.guard!r} grades answers: its rules flag or annotate, not "
            f"{rule.action.value!r}"
        )
    if rule.on_error is not FailMode.OPEN:
        raise PolicyError(
            f"{key}.on_error: guard {rule.guard!r} grades answers, so its failure must not withhold them: "
            "set on_error: open"
        )


def _check_categories(named: list[str] | None, known: Collection[str], guard: str, key: str) -> None:
    unknown = sorted(set(named or ()) - set(known))
    if unknown:
        raise PolicyError(
            f"{key}.categories: unknown categor{'ies' if len(unknown) > 1 else 'y'} "
            f"{', '.join(unknown)} for guard {guard!r} (known: {', '.join(sorted(known)) or 'none'})"
        )


# --- per-request tightening ---------------------------------------------------------------------


class RequestRule(_Strict):
    guard: str
    action: Action | None = None
    thresholds: dict[str, float] = {}
    on_error: FailMode | None = None
    # Categories to check on top of those the policy's rule checks (never instead of them).
    categories: list[str] | None = None
    restore: bool | None = None  # may turn restoring off, never on


class RequestStream(_Strict):
    mode: StreamMode | None = None


class RequestBestOfN(_Strict):
    """A request may raise its policy's best-of-n bar, never lower it, turn it off or change how many
    answers are drawn (those are the operator's costs)."""

    min_reward: float | None = None
    action: Action | None = None


class RequestGuardrails(_Strict):
    """What a client may send as ``"guardrails"`` in a request body: only ever stricter."""

    input: list[RequestRule] = []
    output: list[RequestRule] = []
    stream: RequestStream | None = None
    best_of_n: RequestBestOfN | None = None


def parse_request_guardrails(raw: Any) -> RequestGuardrails:
    try:
        return convert_or_explain(raw, RequestGuardrails, prefix="guardrails")
    except ConfigValidationError as exc:
        raise PolicyError(str(exc)) from None


def tighten(
    policy: Policy,
    asked: RequestGuardrails,
    guards: Mapping[str, frozenset[Stage]],
    defaults: dict[str, dict[str, float]],
    categories: Mapping[str, Collection[str]] | None = None,
) -> Policy:
    """``policy`` made stricter by what the request asked; a request that would loosen it is refused.

    Stricter means: a lower threshold (a higher floor for a ``Grade``), a more severe action (``revise``
    may become ``block``; no request asks for ``revise``; a grading guard only flags or annotates), fail
    closed, an extra guard, more
    categories checked, buffer mode, placeholders not restored. ``guards`` are those a request may name,
    with the stages each serves (the guards some policy runs: only those are loaded); ``categories``, when
    given, the categories of each, which are all a request may name.

    An ask for a guard the policy already runs applies to every rule of that guard at that stage (a
    policy may run one guard twice, say block at 0.9 and flag at 0.2): each rule keeps, setting by
    setting, the stricter of its own value and the asked one, so no rule is ever dropped or loosened.
    An ask looser than every rule it applies to is refused, since it can only be an attempt to loosen.
    Asked ``categories`` are added to those a rule checks (a rule checking all keeps checking all), so
    they can only widen it. An ask for a guard the policy does not run adds a rule.
    """
    stages = {}
    for stage in Stage:
        rules = list(policy.rules(stage))
        for index, ask in enumerate(asked.input if stage is Stage.INPUT else asked.output):
            key = f"guardrails.{stage.value}[{index}]"
            _check_guard(ask.guard, stage, guards, key)
            _refuse_revise(ask, key)
            known = (categories or {}).get(ask.guard, ())
            if categories is not None:
                _check_categories(ask.categories, known, ask.guard, key)
            grades = grade_names(known)
            grading = grades_only(known)
            if grading:
                _check_grading_ask(ask, key)
            targets = [i for i, rule in enumerate(rules) if rule.guard == ask.guard]
            if not targets:
                rules.append(
                    Rule(
                        guard=ask.guard,
                        action=ask.action or (Action.FLAG if grading else Action.BLOCK),
                        thresholds=dict(ask.thresholds),
                        on_error=ask.on_error or (FailMode.OPEN if grading else FailMode.CLOSED),
                        categories=None if ask.categories is None else list(ask.categories),
                        restore=ask.restore is not False,
                    )
                )
                continue
            current = [rules[i] for i in targets]
            _refuse_loosening(current, ask, defaults.get(ask.guard, {}), key, grades)
            for i in targets:
                if ask.action is Action.TRUNCATE and rules[i].action is Action.REDACT:
                    # Neither is stricter: a redaction that cannot rewrite blocks, where a truncation
                    # would release the text before the span. So the redact rule stays (tightened
                    # otherwise) and a truncate rule joins it; together they are stricter than either.
                    rules[i] = _stricter(
                        rules[i], msgspec.structs.replace(ask, action=None), defaults.get(ask.guard, {})
                    )
                    rules.append(msgspec.structs.replace(rules[i], action=Action.TRUNCATE))
                else:
                    rules[i] = _stricter(rules[i], ask, defaults.get(ask.guard, {}), grades)
        stages[stage] = rules
    stream = policy.stream
    if asked.stream is not None and asked.stream.mode is not None and asked.stream.mode != stream.mode:
        if asked.stream.mode is StreamMode.STREAM_FIRST:
            raise PolicyError("guardrails.stream.mode: cannot loosen 'buffer' to 'stream_first'")
        stream = msgspec.structs.replace(stream, mode=asked.stream.mode)
    return msgspec.structs.replace(
        policy,
        input=stages[Stage.INPUT],
        output=stages[Stage.OUTPUT],
        stream=stream,
        best_of_n=_tighter_best_of_n(policy.best_of_n, asked.best_of_n),
    )


def _tighter_best_of_n(policy: BestOfN | None, ask: RequestBestOfN | None) -> BestOfN | None:
    """The policy's best-of-n with a higher bar or a harsher action, as asked; a request can neither turn
    it on (it multiplies the upstream calls the operator pays for) nor loosen it."""
    key = "guardrails.best_of_n"
    if ask is None or (ask.min_reward is None and ask.action is None):
        return policy
    if policy is None:
        raise PolicyError(f"{key}: this policy has no best-of-n; a request cannot turn it on")
    min_reward, action = policy.min_reward, policy.action
    if ask.min_reward is not None:
        if not math.isfinite(ask.min_reward):
            raise PolicyError(f"{key}.min_reward: must be a finite number")
        if min_reward is not None and ask.min_reward < min_reward:
            raise PolicyError(f"{key}.min_reward: cannot lower {min_reward} to {ask.min_reward}")
        min_reward = ask.min_reward
    if ask.action is not None:
        if ask.action not in REWARD_ACTIONS:
            raise PolicyError(f"{key}.action: must be flag, annotate or block, not {ask.action.value!r}")
        if ask.action.severity < action.severity:
            raise PolicyError(f"{key}.action: cannot loosen {action.value!r} to {ask.action.value!r}")
        action = ask.action
    return msgspec.structs.replace(policy, min_reward=min_reward, action=action)


def _check_guard(guard: str, stage: Stage, guards: Mapping[str, frozenset[Stage]], key: str) -> None:
    if guard not in guards:
        usable = ", ".join(sorted(guards)) or "none"
        raise PolicyError(
            f"{key}.guard: no guard named {guard!r} can be used (usable: {usable}; a request may only "
            "name guards that some policy runs)"
        )
    if stage not in guards[guard]:
        raise PolicyError(f"{key}.guard: guard {guard!r} does not judge {stage.value} text")


def _threshold(rule: Rule, category: str, defaults: dict[str, float], grades: Collection[str] = ()) -> float:
    """The rule's threshold; with none (nor a default), nothing flags: 1.0, or no floor for a grade."""
    return rule.thresholds.get(category, defaults.get(category, -math.inf if category in grades else 1.0))


def _check_grading_ask(ask: RequestRule, key: str) -> None:
    """What a request may ask of a guard that only grades answers (see ``Grade``)."""
    if ask.action is not None and ask.action.value not in GRADE_ACTIONS:
        raise PolicyError(
            f"{key}.action: guard {ask.guard!r} grades answers: it flags or annotates, "
            f"not {ask.action.value!r}"
        )
    for category, value in ask.thresholds.items():
        if not math.isfinite(value):
            raise PolicyError(f"{key}.thresholds.{category}: must be a finite number")


def _refuse_revise(ask: RequestRule, key: str) -> None:
    """A request never asks for ``revise``: it would spend the operator's critic calls (and a revise
    rule's fallback is the operator's to choose). It may turn a revise rule into ``block``."""
    if ask.action is Action.REVISE:
        raise PolicyError(f"{key}.action: a request cannot ask for 'revise' (ask for 'block' instead)")


def _refuse_loosening(
    rules: list[Rule], ask: RequestRule, defaults: dict[str, float], key: str, grades: Collection[str] = ()
) -> None:
    if ask.action is not None:
        weakest = min(rules, key=lambda rule: rule.action.severity).action
        if ask.action.severity < weakest.severity:
            raise PolicyError(f"{key}.action: cannot loosen {weakest.value!r} to {ask.action.value!r}")
    for category, value in ask.thresholds.items():
        thresholds = [_threshold(rule, category, defaults, grades) for rule in rules]
        if category in grades:  # a floor: lower is looser
            if value < min(thresholds):
                raise PolicyError(
                    f"{key}.thresholds.{category}: cannot lower the floor {min(thresholds)} to {value}"
                )
        elif value > max(thresholds):
            raise PolicyError(f"{key}.thresholds.{category}: cannot raise {max(thresholds)} to {value}")
    if ask.on_error is FailMode.OPEN and all(rule.on_error is FailMode.CLOSED for rule in rules):
        raise PolicyError(f"{key}.on_error: cannot loosen 'closed' to 'open'")
    if ask.restore is True and not any(rule.restore for rule in rules):
        raise PolicyError(f"{key}.restore: cannot turn on what the policy turns off")


def _stricter(rule: Rule, ask: RequestRule, defaults: dict[str, float], grades: Collection[str] = ()) -> Rule:
    """``rule``, with each setting the ask makes stricter taken from the ask, and none loosened."""
    action = rule.action
    if ask.action is not None and ask.action.severity > action.severity:
        action = ask.action
    thresholds = dict(rule.thresholds)
    for category, value in ask.thresholds.items():
        current = _threshold(rule, category, defaults, grades)
        if value > current if category in grades else value < current:
            thresholds[category] = value
    on_error = FailMode.CLOSED if ask.on_error is FailMode.CLOSED else rule.on_error
    categories = rule.categories
    if categories is not None and ask.categories is not None:
        categories = list(dict.fromkeys(categories + ask.categories))
    restore = rule.restore and ask.restore is not False
    return msgspec.structs.replace(
        rule, action=action, thresholds=thresholds, on_error=on_error, categories=categories, restore=restore
    )
