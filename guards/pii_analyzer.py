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
# A text, and the entities to look for in it (empty: every entity of the spec).
PiiQuery = tuple[str, tuple[str, ...]]


class AnalyzerSpec(msgspec.Struct, frozen=True):
    spacy_model: str
    language: str
    entities: tuple[str, ...]
    # Run the pipeline's tagger and lemmatizer for presidio's context words; False: lowercased words
    # stand in for lemmas (``_trim_pipeline``).
    lemmatizer: bool = False


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


def build_analyzer(spec: AnalyzerSpec) -> Callable[[list[PiiQuery]], list[Findings]]:
    """Load the spaCy pipeline and presidio's recognisers (seconds): a function from queries (a text
    and the entities to look for) to findings.

    A query that looks for no entity the NLP model finds (the default output rule counts only e-mails,
    phones, cards... whatever the context) is analysed without the model: spaCy only tokenises (and
    makes lemmas, for context words), and presidio runs the pattern recognisers for those entities.
    Presidio settles overlapping findings within one entity type, so looking for fewer entities never
    changes the findings of those looked for."""
    # presidio's e-mail recogniser calls tldextract's module-level extractor, which downloads the
    # public-suffix list on first use (and logs a traceback offline). The snapshot it ships suffices.
    import tldextract.tldextract

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    # Presidio warns at length about recognisers for other languages and unmapped spaCy labels.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": spec.language, "model_name": spec.spacy_model}],
        }
    )
    nlp_engine = provider.create_engine()
    assert isinstance(nlp_engine, SpacyNlpEngine)  # the configuration above asks for spaCy
    _trim_pipeline(nlp_engine, spec.lemmatizer)
    engine = AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=[spec.language])
    batch = BatchAnalyzerEngine(analyzer_engine=engine)
    language = spec.language
    judge = LanguageJudge((spec.language,))
    # The recognisers that report the NLP model's own entities (the rest are patterns and lists).
    model_made = {r.id for r in engine.registry.recognizers if isinstance(r, SpacyRecognizer)}
    assert nlp_engine.nlp is not None  # loaded by create_engine
    nlp = nlp_engine.nlp[language]
    model_entities = _model_entities(nlp, nlp_engine.ner_model_configuration)
    lemma_makers = (*_LEMMAS, *_EMBEDDINGS) if spec.lemmatizer else (LOWERCASE_LEMMAS,)
    not_for_lemmas = [name for name in nlp.pipe_names if name not in lemma_makers]

    def analyze_group(texts: list[str], wanted: tuple[str, ...]) -> list[list[Any]]:
        off = [] if model_entities & set(wanted) else not_for_lemmas  # patterns only: no model entity
        with nlp.select_pipes(disable=off):
            size = len(texts)
            return batch.analyze_iterator(texts, language=language, entities=list(wanted), batch_size=size)

    def analyze(queries: list[PiiQuery]) -> list[Findings]:
        groups: dict[tuple[str, ...], list[int]] = {}
        for index, (_, wanted) in enumerate(queries):
            groups.setdefault(wanted or spec.entities, []).append(index)
        found: list[Findings] = [[] for _ in queries]
        for wanted, indexes in groups.items():
            texts = [queries[index][0] for index in indexes]
            for index, text, results in zip(indexes, texts, analyze_group(texts, wanted), strict=True):
                kept = _in_language(text, results, model_made, judge)
                found[index] = [(r.entity_type, r.start, r.end, float(r.score)) for r in kept]
        return found

    return analyze


# Components presidio never reads: the parse and sentences, and (when lowercased words stand in for
# lemmas) what only makes the lemmas: part-of-speech tags and morphology, then the lemmatizer.
_PARSE = ("parser", "senter")
_LEMMAS = ("tagger", "morphologizer", "attribute_ruler", "lemmatizer")
_EMBEDDINGS = ("tok2vec", "transformer")
LOWERCASE_LEMMAS = "hhh_lowercase_lemmas"


def _trim_pipeline(nlp_engine: Any, lemmatizer: bool) -> None:
    """Turn off what presidio does not need from spaCy. It reads tokens, entities (the NER) and lemmas
    (for context words: "phone" near a number raises its score), never the parse. Without
    ``lemmatizer``, each word lowercased stands in for its lemma: presidio matches context words as
    substrings of them ("phones" still holds "phone"), and the NER then runs alone, at about half the
    pipeline's cost. An embedding layer (``tok2vec``, ``transformer``) stays while an enabled component
    listens to it (a transformer pipeline's NER does; the small, medium and large English pipelines'
    NER has its own). On the suite's 597 labelled PII texts every finding, its entity, span and score, is
    the same either way (``tests/integration/test_pii_skip_unchanged.py``)."""
    from spacy.language import Language

    for nlp in getattr(nlp_engine, "nlp", {}).values():
        off = _PARSE if lemmatizer else _PARSE + _LEMMAS
        for name in off:
            if name in nlp.pipe_names:
                nlp.disable_pipe(name)
        if lemmatizer:
            continue
        for name, pipe in list(nlp.pipeline):
            listeners = set(getattr(pipe, "listening_components", None) or ()) & set(nlp.pipe_names)
            if name in _EMBEDDINGS and not listeners:
                nlp.disable_pipe(name)
        if not Language.has_factory(LOWERCASE_LEMMAS):
            Language.component(LOWERCASE_LEMMAS, func=_lowercase_lemmas)
        if LOWERCASE_LEMMAS not in nlp.pipe_names:
            nlp.add_pipe(LOWERCASE_LEMMAS, last=True)


def _model_entities(nlp: Any, configuration: Any) -> set[str]:
    """The presidio entities the pipeline itself can report: its components' labels as presidio maps
    them (PERSON, LOCATION, NRP...; a label it does not map counts as itself). Not the recogniser's
    list, which names every entity some pipeline might map to (PHONE_NUMBER and EMAIL among them)."""
    mapping = configuration.model_to_presidio_entity_mapping or {}
    tagging = (*_PARSE, *_LEMMAS, *_EMBEDDINGS)  # their labels are tags and arcs, never entities
    labels = {label for name, labels in nlp.pipe_labels.items() if name not in tagging for label in labels}
    return {mapping.get(label, label) for label in labels} - set(configuration.labels_to_ignore or ())


def _lowercase_lemmas(doc: Any) -> Any:
    """Each token's lemma is its lowercased text (one array copy, not a Python loop over tokens)."""
    doc.from_array(["LEMMA"], doc.to_array(["LOWER"]))
    return doc


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
