"""Building presidio's analyzer for the PII guard: a picklable spec in, a batch predict function out, so
the same function is built in the gateway's process or in a child of its own (``guards.child_process``).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from guards.language import LanguageJudge

# (entity, start, end, score) per finding, per text.
Findings = list[tuple[str, int, int, float]]


class AnalyzerSpec(msgspec.Struct, frozen=True):
    spacy_model: str
    language: str
    entities: tuple[str, ...]


def pipeline_installed(spacy_model: str) -> bool:
    """Whether ``spacy_model`` is a directory or an installed package (presidio would otherwise try to
    download it at start-up, which a gateway must not do)."""
    if Path(spacy_model).is_dir():
        return True
    try:
        return importlib.util.find_spec(spacy_model) is not None
    except (ImportError, ValueError):
        return False


def unneeded_modules(spacy_model: str) -> tuple[str, ...]:
    """What a process running only this pipeline need not import: torch and transformers (thinc and
    presidio import them when installed, about 330 MiB), unless the pipeline is a transformer one
    (``en_core_web_trf``), or its configuration cannot be read."""
    path = Path(spacy_model)
    if not path.is_dir():
        try:
            found = importlib.util.find_spec(spacy_model)
        except (ImportError, ValueError):
            found = None
        locations = list(found.submodule_search_locations or []) if found is not None else []
        if not locations:
            return ()
        path = Path(locations[0])
    configs = list(path.glob("config.cfg")) + list(path.glob("*/config.cfg"))
    if not configs or any("transformer" in config.read_text(errors="replace") for config in configs):
        return ()
    return ("torch", "transformers")


def build_analyzer(spec: AnalyzerSpec) -> Callable[[list[str]], list[Findings]]:
    """Load the spaCy pipeline and presidio's recognisers (seconds): a function from texts to findings."""
    # presidio's e-mail recogniser calls tldextract's module-level extractor, which downloads the
    # public-suffix list on first use (and logs a traceback offline). The snapshot it ships suffices.
    import tldextract.tldextract

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    # Presidio warns at length about recognisers for other languages and unmapped spaCy labels.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": spec.language, "model_name": spec.spacy_model}],
        }
    )
    nlp_engine = provider.create_engine()
    _without_parser(nlp_engine)
    engine = AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=[spec.language])
    batch = BatchAnalyzerEngine(analyzer_engine=engine)
    entities = list(spec.entities)
    language = spec.language
    judge = LanguageJudge((spec.language,))
    # The recognisers that report the NLP model's own entities (the rest are patterns and lists).
    model_made = {r.id for r in engine.registry.recognizers if isinstance(r, SpacyRecognizer)}

    def analyze(texts: list[str]) -> list[Findings]:
        found = batch.analyze_iterator(texts, language=language, entities=entities, batch_size=len(texts))
        return [
            [
                (r.entity_type, r.start, r.end, float(r.score))
                for r in _in_language(text, results, model_made, judge)
            ]
            for text, results in zip(texts, found, strict=True)
        ]

    return analyze


def _without_parser(nlp_engine: Any) -> None:
    """Turn off spaCy's dependency parser: presidio reads tokens, lemmas (the tagger's) and entities (the
    NER, which does not read the parse), never the parse or sentences. On the suite's 552 labelled PII
    texts every finding is the same without it, and presidio's CPU drops by about a quarter
    (``tests/integration/test_pii_skip_unchanged.py`` checks the findings)."""
    for nlp in getattr(nlp_engine, "nlp", {}).values():
        if "parser" in nlp.pipe_names:
            nlp.disable_pipe("parser")


def _in_language(text: str, results: list[Any], model_made: set[str], judge: LanguageJudge) -> list[Any]:
    """``results`` less the model's guesses in sentences clearly not in a language it covers."""

    def guessed(result: Any) -> bool:
        return result.recognition_metadata.get("recognizer_identifier") in model_made

    if not any(guessed(r) for r in results):
        return results  # patterns only: no language to judge
    foreign = judge.foreign_ranges(
        text,
        [(r.start, r.end) for r in results if guessed(r)],
        [(r.start, r.end) for r in results if not guessed(r)],
    )
    return [r for r in results if not (guessed(r) and any(a <= r.start < b for a, b in foreign))]
