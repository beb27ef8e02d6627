"""The PyTorch port of toxic-comment-classifier's BiLSTM, held to scores the original Keras model
computed (tests/data/toxicity_port_expected.json, written by tests/support/check_toxicity_port.py,
which compared the port with TensorFlow on 451 texts)."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest

from guards.models.bilstm_toxicity import (
    CATEGORIES,
    KERAS_LABELS,
    MAXLEN,
    BiLstmConfig,
    BiLstmToxicity,
    load_tokenizer,
    package_model_dir,
    pad_front,
    windows,
)

EXPECTED = Path(__file__).resolve().parents[1] / "data" / "toxicity_port_expected.json"


@pytest.fixture(scope="module")
def model() -> BiLstmToxicity:
    return BiLstmToxicity(BiLstmConfig(device="cpu"))


def test_port_reproduces_the_originals_scores(model: BiLstmToxicity) -> None:
    expected = json.loads(EXPECTED.read_text())
    assert len(expected) >= 5
    ported = model.classify_like_original([row["text"] for row in expected])
    for row, mine in zip(expected, ported, strict=True):
        assert set(mine) == set(KERAS_LABELS)
        for label in KERAS_LABELS:
            assert mine[label] == pytest.approx(row["scores"][label], abs=1e-5), (row["text"], label)
    assert ported[0]["toxic"] > 0.9  # "You are so dumb and stupid!"
    assert ported[1]["toxic"] < 0.05  # "This is wonderful news."


def test_neither_tensorflow_nor_keras_is_imported(model: BiLstmToxicity) -> None:
    model.predict(["hello"])
    assert "tensorflow" not in sys.modules
    assert "keras" not in sys.modules


def test_preprocessing_is_keras_texts_to_sequences(model: BiLstmToxicity) -> None:
    tokenizer = model.tokenizer
    # Lower-cased; Keras' filters become spaces; only ' ' splits (a no-break space stays in the word).
    assert tokenizer.words("You, IDIOT!!\tgo\u00a0away") == ["you", "idiot", "go\u00a0away"]
    the, you = tokenizer.word_index["the"], tokenizer.word_index["you"]
    assert tokenizer.to_sequence("The you zzzqqqunknown") == [the, you]  # unknown words are dropped
    assert all(index < 20000 for index in tokenizer.word_index.values())  # only what the model knows
    assert pad_front([5, 6]) == [0] * (MAXLEN - 2) + [5, 6]
    assert pad_front(list(range(1, 151))) == list(range(51, 151))  # truncated at the front, like Keras


def test_guard_scores_use_the_guards_category_names(model: BiLstmToxicity) -> None:
    (scores,) = model.predict(["You are so dumb and stupid!"])
    assert tuple(scores) == CATEGORIES
    (original,) = model.classify_like_original(["You are so dumb and stupid!"])
    assert scores["toxicity"] == original["toxic"]
    assert scores["identity_attack"] == original["identity_hate"]


def test_threat_toxicity_at_the_start_of_a_long_text_is_not_cut_off(model: BiLstmToxicity) -> None:
    """The original keeps only the last 100 known words: a hostile text padded with 150 clean words
    after it scores as clean there. The guard scores every window, so it still sees it."""
    insult = "You are so dumb and stupid!"
    padded = insult + " " + "thank you for the great article about the history of the city " * 12
    (original,) = model.classify_like_original([padded])
    (guarded,) = model.predict([padded])
    assert original["toxic"] < 0.5  # the original misses it
    assert guarded["toxicity"] >= 0.5  # flags at the default threshold (diluted by its clean window)
    # A text of at most 100 known words scores exactly as the original.
    assert model.predict([insult])[0]["toxicity"] == model.classify_like_original([insult])[0]["toxic"]


def test_threat_a_huge_text_costs_at_most_max_windows_rows() -> None:
    sequence = list(range(1, 100_001))
    cut = windows(sequence, max_windows=32)
    assert len(cut) <= 32
    assert cut[0] == sequence[:MAXLEN]
    assert cut[-1] == sequence[-MAXLEN:]
    assert all(len(window) == MAXLEN for window in cut)
    assert len(windows(sequence[:250], max_windows=32)) == 4  # starts 0, 50, 100, 150: half overlap
    assert windows([], max_windows=32) == [[0] * MAXLEN]


def test_threat_a_text_over_budget_is_still_covered_without_gaps_as_far_as_possible() -> None:
    """Past the budget at half overlap, windows stop overlapping before any text is skipped."""
    sequence = list(range(1, 3_001))  # 59 windows at half overlap, 30 without overlap
    cut = windows(sequence, max_windows=32)
    assert len(cut) == 30
    assert [ident for window in cut for ident in window] == sequence  # every id, once


def test_threat_a_tampered_tokenizer_pickle_cannot_run_code(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, ("echo pwned",))

    path = tmp_path / "tokenizer.pickle"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load (posix|os)\.system"):
        load_tokenizer(path)


def test_missing_model_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.pickle"):
        BiLstmToxicity(BiLstmConfig(model_dir=str(tmp_path)))
    assert (package_model_dir() / "model.weights.h5").is_file()


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="max_windows"):
        BiLstmConfig(max_windows=0)
    with pytest.raises(ValueError, match="max_batch"):
        BiLstmConfig(max_batch=0)


def test_toxicity_config_errors_name_the_key() -> None:
    from guards.config_errors import ConfigValidationError, convert_or_explain
    from guards.toxicity import ToxicityConfig

    prefix = "guards.toxicity.config"
    with pytest.raises(ConfigValidationError) as no_tier:
        convert_or_explain({"classic": False, "bilstm": None}, ToxicityConfig, prefix=prefix)
    assert no_tier.value.key == "guards.toxicity.config.bilstm"
    with pytest.raises(ConfigValidationError) as bad_window:
        convert_or_explain({"bilstm": {"max_windows": 0}}, ToxicityConfig, prefix=prefix)
    assert bad_window.value.key == "guards.toxicity.config.bilstm.max_windows"
    with pytest.raises(ConfigValidationError) as unknown:
        convert_or_explain({"bilstm": {"maxlen": 200}}, ToxicityConfig, prefix=prefix)
    assert "maxlen" in str(unknown.value)


def test_default_tiering() -> None:
    from guards.toxicity import ToxicityConfig

    default = ToxicityConfig()
    assert (default.model_tier, default.uses_classic) == ("bilstm", False)
    assert ToxicityConfig(classic=True, bilstm=None).model_tier is None  # the old classic-only guard
    assert ToxicityConfig(classic=True).uses_classic
