"""What a guard says about one text: plain data, shared with the gateway (reports) and feedback (events)."""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Stage(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class Span(msgspec.Struct, frozen=True):
    """A labelled character range of the judged text. ``replacement`` is what redaction puts there."""

    start: int
    end: int
    label: str
    score: float = 1.0
    replacement: str | None = None


class Evidence(msgspec.Struct, frozen=True):
    """Why a guard decided: a matched source, an unsupported sentence, a detector's note."""

    kind: str
    detail: str
    source: str | None = None
    start: int | None = None  # the part of the judged text it is about, when it is about a part
    end: int | None = None
    score: float | None = None


class Source(msgspec.Struct, frozen=True):
    """A document an answer should rest on: supplied with the request, or from a citation database."""

    id: str
    text: str
    title: str = ""
    url: str = ""


class JudgeContext(msgspec.Struct):
    """What a guard may know beyond the text: the request's sources. ``cache`` lets a guard keep work
    (source embeddings, say) across the windows of one stream."""

    sources: list[Source] = []
    cache: dict[str, object] = {}
    # In a stream window, where the new text starts: what comes before is context already judged, which
    # a guard judging whole sentences (grounding) must not judge again.
    focus_start: int = 0
    stage: Stage = Stage.OUTPUT  # set by the pipeline
    # The request as one text (``feedback.preferences.formats.dataset_prompt``), for guards that judge an
    # answer against what was asked (a reward model), and the model that answered (for their metrics).
    prompt: str = ""
    model: str = ""
    # At the input stage, per text judged, the kind of text it is (``gateway.guarded.text_slots.slot_kinds``:
    # user, system, assistant, tool, source, other), for guards that treat them apart (prompt injection);
    # empty when unknown.
    kinds: list[str] = []
    # The categories the rule being run counts (None: all), set by the pipeline, so a guard may skip the
    # work that could only find the others (the PII guard: recognisers that cannot match, see
    # ``guards.pii_triggers``).
    categories: list[str] | None = None
    # Who asked (at the input stage): the scope of cached verdicts (``guards.verdict_cache``); "" for none.
    tenant: str = ""
    # How long a batching runner may hold this check for others to share its model call (a stream's later
    # windows while the guards are ahead of the upstream, ``StreamPolicy.patience_ms``); 0 for the rest.
    patience_s: float = 0.0


class Verdict(msgspec.Struct):
    guard: str
    allowed: bool
    scores: dict[str, float] = {}
    # Categories whose score reached their threshold: the reasons ``allowed`` is false.
    categories: list[str] = []
    spans: list[Span] = []
    # The text with every span replaced, when the guard can make it safe rather than only refuse it.
    rewritten: str | None = None
    evidence: list[Evidence] = []
    # What `action: annotate` appends, when the guard has something more specific than the policy's
    # disclaimer (an attribution, say).
    annotation: str | None = None
    latency_ms: float = 0.0
