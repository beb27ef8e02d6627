"""The BiLSTM's padding shortcut (guards/models/bilstm_padding.py) gives the plain padded path's
scores (``predict_reference`` / ``score_sequences``) to within 1e-6, on every shape of input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from guards.models.bilstm_padding import PAD_ID, PaddingShortcut
from guards.models.bilstm_toxicity import MAXLEN, VOCAB_SIZE, BiLstmConfig, BiLstmToxicity, pad_front

DATA = Path(__file__).resolve().parents[1] / "data"
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def model() -> BiLstmToxicity:
    return BiLstmToxicity(BiLstmConfig(device="cpu"))


def largest_difference(model: BiLstmToxicity, texts: list[str]) -> float:
    fast, reference = model.predict(texts), model.predict_reference(texts)
    assert [list(row) for row in fast] == [list(row) for row in reference]
    return max(abs(a[key] - b[key]) for a, b in zip(fast, reference, strict=True) for key in a)


def largest_row_difference(shortcut: PaddingShortcut, model: BiLstmToxicity, rows: list[list[int]]) -> float:
    fast: list[list[float]] = shortcut.score(rows).tolist()
    reference = model.score_sequences([pad_front(row) for row in rows])
    assert len(fast) == len(reference) == len(rows)
    return max(abs(a - b) for x, y in zip(fast, reference, strict=True) for a, b in zip(x, y, strict=True))


def known_words(model: BiLstmToxicity, texts: list[str]) -> list[str]:
    index = model.tokenizer.word_index
    return [word for text in texts for word in model.tokenizer.words(text) if word in index]


def labelled_texts() -> list[str]:
    lines = (DATA / "toxicity_labelled.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def test_labelled_texts_score_as_the_plain_path_in_one_batch_and_alone(model: BiLstmToxicity) -> None:
    texts = labelled_texts()
    assert len(texts) == 240
    assert largest_difference(model, texts) <= TOLERANCE
    assert max(largest_difference(model, [text]) for text in texts) <= TOLERANCE


def test_port_expected_texts_score_as_the_plain_path(model: BiLstmToxicity) -> None:
    texts = [row["text"] for row in json.loads((DATA / "toxicity_port_expected.json").read_text())]
    assert largest_difference(model, texts) <= TOLERANCE
    for text, scores in zip(texts, model.predict(texts), strict=True):
        (original,) = model.classify_like_original([text])
        assert scores["toxicity"] == pytest.approx(original["toxic"], abs=TOLERANCE)


@pytest.mark.parametrize("batch", [1, 4, 16, 64])
def test_sentence_sized_windows_score_as_the_plain_path(model: BiLstmToxicity, batch: int) -> None:
    words = known_words(model, labelled_texts())
    texts = [" ".join(words[start : start + 20]) for start in range(0, 20 * batch, 20)]
    assert all(len(model.tokenizer.to_sequence(text)) == 20 for text in texts)
    assert largest_difference(model, texts) <= TOLERANCE


def test_empty_texts_are_padding_only_and_score_as_the_plain_path(model: BiLstmToxicity) -> None:
    for texts in ([""], ["zzzqqqunknown xxyyzz"], ["", "a calm note about the weather", ""]):
        assert largest_difference(model, texts) <= TOLERANCE
    assert model.predict([]) == model.predict_reference([]) == []


def test_texts_of_exactly_100_and_more_than_100_known_words(model: BiLstmToxicity) -> None:
    words = known_words(model, labelled_texts())
    sizes = [99, 100, 101, 150, 250, 1_000]
    texts = [" ".join(words[:size]) for size in sizes]
    assert [len(model.tokenizer.to_sequence(text)) for text in texts] == sizes
    assert largest_difference(model, texts) <= TOLERANCE
    assert max(largest_difference(model, [text]) for text in texts) <= TOLERANCE


def test_a_batch_mixing_very_different_lengths(model: BiLstmToxicity) -> None:
    words = known_words(model, labelled_texts())
    sizes = [0, 1, 100, 2, 50, 51, 99, 20, 0, 300, 3, 49]
    texts = [" ".join(words[7 * i : 7 * i + size]) for i, size in enumerate(sizes)]
    assert largest_difference(model, texts) <= TOLERANCE


def test_random_id_sequences_of_every_length(model: BiLstmToxicity) -> None:
    rng = random.Random(20261201)
    rows = [[rng.randrange(1, VOCAB_SIZE) for _ in range(length)] for length in range(MAXLEN + 1)]
    rng.shuffle(rows)
    assert largest_row_difference(model.shortcut, model, rows) <= TOLERANCE
    for row in rows[::10]:
        assert largest_row_difference(model.shortcut, model, [row]) <= TOLERANCE


@pytest.mark.parametrize("shortcut_max", [0, MAXLEN // 2, MAXLEN])
def test_both_routes_agree_with_the_plain_path(model: BiLstmToxicity, shortcut_max: int) -> None:
    """Rows up to ``shortcut_max`` ids take the shortcut, longer ones the plain network; forcing
    either route for every row changes nothing."""
    shortcut = PaddingShortcut(model.network, MAXLEN, shortcut_max=shortcut_max)
    rng = random.Random(shortcut_max)
    rows = [[rng.randrange(1, VOCAB_SIZE) for _ in range(rng.randint(0, MAXLEN))] for _ in range(40)]
    assert largest_row_difference(shortcut, model, rows) <= TOLERANCE
    same_length = [[rng.randrange(1, VOCAB_SIZE) for _ in range(30)] for _ in range(8)]
    assert largest_row_difference(shortcut, model, same_length) <= TOLERANCE


def test_threat_adversarial_ids_padding_ids_inside_and_vocabulary_edges(model: BiLstmToxicity) -> None:
    """Ids the tokenizer never emits (the padding id inside or leading a row, the last id) still
    score exactly as the padded row: a leading padding id is just one more padding step."""
    rows = [
        [PAD_ID] * 10 + [5, 6],
        [PAD_ID] * MAXLEN,
        [5, PAD_ID, PAD_ID, 6, PAD_ID],
        [VOCAB_SIZE - 1] * MAXLEN,
        [VOCAB_SIZE - 1] * 7,
        [1] * 33 + [VOCAB_SIZE - 1] * 33,
    ]
    assert largest_row_difference(model.shortcut, model, rows) <= TOLERANCE
    assert max(largest_row_difference(model.shortcut, model, [row]) for row in rows) <= TOLERANCE


def test_threat_a_row_longer_than_a_window_is_refused(model: BiLstmToxicity) -> None:
    with pytest.raises(ValueError, match="longer than 100"):
        model.shortcut.score([[5] * (MAXLEN + 1)])


def test_the_backward_padding_steps_reach_no_float32_fixed_point_so_all_run(model: BiLstmToxicity) -> None:
    """Why the backward direction's padding steps are not cut short: fed the padding vector from a
    real text's state, its cell state is still moving after 100 steps, so an early stop would change
    scores."""
    import torch

    shortcut = model.shortcut
    sequence = model.tokenizer.to_sequence("You are so dumb and stupid!")
    with torch.inference_mode():
        _, (h, c) = shortcut.backward_lstm(shortcut.embedding(torch.tensor([sequence[::-1]]).t()))
        pad = shortcut.embedding(torch.tensor([[PAD_ID]]))
        for _ in range(MAXLEN):
            h_next, c_next = shortcut.backward_lstm(pad, (h, c))[1]
            assert not (torch.equal(h_next, h) and torch.equal(c_next, c))
            h, c = h_next, c_next
