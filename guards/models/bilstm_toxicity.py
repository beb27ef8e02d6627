"""The embedded toxicity model: ``toxic-comment-classifier`` 0.3.0's Keras BiLSTM (MIT, trained on the
Jigsaw toxic-comment data, six labels), ported to PyTorch so the gateway needs no TensorFlow.

The package ships two files, read here without importing TensorFlow or Keras:
- ``model/model.weights.h5``: Keras 3 weights, read with ``h5py``;
- ``model/tokenizer.pickle``: a pickled Keras ``Tokenizer``. A restricted unpickler maps that class to a
  stand-in that keeps only what ``texts_to_sequences`` reads, and refuses every other global.

The package's own ``classify`` runs ``tokenizer.texts_to_sequences`` and ``pad_sequences(maxlen=100)``
(padding and truncating at the front), then Embedding(20000, 50) -> BiLSTM(50, every step) ->
global max pool -> Dense(50, relu) -> Dense(6, sigmoid). ``score_sequences`` reproduces it exactly
(checked against TensorFlow by ``tests/support/check_toxicity_port.py``).

The original keeps only the *last* 100 known words of a text, so toxicity at the start of a long text is
never seen. ``predict`` scores every window of 100 known words instead (overlapping by half; see
``windows`` for very long texts) and keeps each label's maximum; texts of up to 100 known words score
exactly as the original.

``predict`` runs the network through ``bilstm_padding.PaddingShortcut``: the forward direction's
padding steps come from a table built at load, so a window of ``n`` known words costs ``100 + n``
LSTM steps instead of 200, with the same scores (to float rounding, about 1e-7).
``predict_reference`` is the plain path (every row padded to 100 ids through ``score_sequences``),
kept for parity tests and benchmarks.
"""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from guards.devices import DevicePreference, Placement, choose_placement
from guards.models.bilstm_padding import PaddingShortcut

if TYPE_CHECKING:
    import torch

PACKAGE = "toxic_classifier"  # toxic-comment-classifier's import name
MAXLEN = 100
VOCAB_SIZE = 20000
EMBEDDING_DIM = 50
UNITS = 50
KERAS_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
# The guard's category names (detoxify's), in KERAS_LABELS' order.
CATEGORIES = ("toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack")
# Where Keras has kept its Tokenizer class over the years; the pickle names one of them.
_TOKENIZER_CLASSES = frozenset(
    {
        ("keras.src.legacy.preprocessing.text", "Tokenizer"),
        ("keras.preprocessing.text", "Tokenizer"),
        ("keras_preprocessing.text", "Tokenizer"),
        ("tensorflow.keras.preprocessing.text", "Tokenizer"),
    }
)
_SAFE_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("builtins", "int"),
        ("builtins", "list"),
        ("builtins", "dict"),
    }
)


class BiLstmConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``model_dir``: a directory holding ``model.weights.h5`` and ``tokenizer.pickle`` (default: the
    installed package's). The model is small: the CPU is the default device."""

    # A directory holding model.weights.h5 and tokenizer.pickle; default: the installed package's.
    model_dir: str | None = None
    # cpu (the default: the model is small), auto or cuda.
    device: DevicePreference = "cpu"
    # Texts one model call takes at most (the shared batching runner's micro-batch).
    max_batch: int = 64
    # How long the runner waits for more texts before it runs a partial batch.
    max_wait_ms: float = 1.0
    # Windows of 100 known words per text, at most: a hostile client cannot make one text cost more.
    # 64 cover 6,400 known words without gaps (about 0.5 ms a window in batches on one CPU thread).
    max_windows: int = 64

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch: must be at least 1")
        if self.max_windows < 1:
            raise ValueError("max_windows: must be at least 1")


class KerasTokenizer:
    """A stand-in for Keras' ``Tokenizer``: what ``texts_to_sequences`` reads, nothing else."""

    filters: str
    split: str
    lower: bool
    num_words: int | None
    oov_token: str | None
    char_level: bool
    word_index: dict[str, int]

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        if state.get("analyzer") is not None:
            raise ValueError("tokenizer: a custom analyzer cannot be reproduced")
        self.filters = str(state["filters"])
        self.split = str(state["split"])
        self.lower = bool(state["lower"])
        self.num_words = state["num_words"]
        self.oov_token = state["oov_token"]
        self.char_level = bool(state["char_level"])
        limit = self.num_words
        # Only words the model knows matter (Keras drops the rest when there is no oov token).
        self.word_index = {
            word: index
            for word, index in state["word_index"].items()
            if limit is None or index < limit or word == self.oov_token
        }
        self._translate = str.maketrans(dict.fromkeys(self.filters, self.split))

    def words(self, text: str) -> list[str]:
        """Keras' ``text_to_word_sequence``: lower, every filter character to ``split``, split on it."""
        if self.lower:
            text = text.lower()
        if self.char_level:
            return list(text)
        return [word for word in text.translate(self._translate).split(self.split) if word]

    def to_sequence(self, text: str) -> list[int]:
        """Keras' ``texts_to_sequences`` for one text."""
        num_words = self.num_words
        oov = self.word_index.get(self.oov_token) if self.oov_token is not None else None
        sequence = []
        for word in self.words(text):
            index = self.word_index.get(word)
            if index is not None and not (num_words and index >= num_words):
                sequence.append(index)
            elif oov is not None:
                sequence.append(oov)
        return sequence


class _TokenizerUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TOKENIZER_CLASSES:
            return KerasTokenizer
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"tokenizer.pickle: refusing to load {module}.{name}")


def load_tokenizer(path: Path) -> KerasTokenizer:
    with path.open("rb") as handle:
        tokenizer = _TokenizerUnpickler(handle).load()
    if not isinstance(tokenizer, KerasTokenizer):
        raise ValueError(f"{path}: not a pickled Keras Tokenizer")
    return tokenizer


def pad_front(sequence: list[int], maxlen: int = MAXLEN) -> list[int]:
    """Keras' ``pad_sequences`` defaults: keep the last ``maxlen``, pad with 0 at the front."""
    kept = sequence[-maxlen:] if sequence else []
    return [0] * (maxlen - len(kept)) + kept


def windows(
    sequence: list[int], max_windows: int, maxlen: int = MAXLEN, *, pad: bool = True
) -> list[list[int]]:
    """Windows of ``maxlen`` ids overlapping by half, the last one ending at the text's end (so a short
    text gives exactly the original's single padded row; with ``pad=False`` that row is the text's ids
    alone, for ``PaddingShortcut`` to pad implicitly). A text needing more than ``max_windows`` is
    cut into windows that do not overlap and, if still too many, those are thinned evenly, always keeping
    the first and the last: the cost of one text is bounded, at the price of gaps in a very long one."""
    if len(sequence) <= maxlen:
        return [pad_front(sequence, maxlen) if pad else list(sequence)]
    starts = _starts(len(sequence), maxlen, maxlen // 2)
    if len(starts) > max_windows:
        starts = _starts(len(sequence), maxlen, maxlen)
    if len(starts) > max_windows:
        step = (len(starts) - 1) / (max_windows - 1) if max_windows > 1 else 0
        starts = sorted({starts[round(i * step)] for i in range(max_windows)} | {starts[-1]})
    return [sequence[start : start + maxlen] for start in starts]


def _starts(length: int, maxlen: int, stride: int) -> list[int]:
    return [*range(0, length - maxlen, stride), length - maxlen]


def package_model_dir() -> Path:
    """The installed package's model directory, found without importing the package (its
    ``__init__`` imports TensorFlow)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "toxicity: the embedded model needs toxic-comment-classifier==0.3.0 "
            "(deploy/bootstrap.sh installs it with --no-deps: its TensorFlow is not needed)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def build_network() -> torch.nn.Module:
    import torch
    from torch import nn

    class BiLstmToxicity(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(VOCAB_SIZE, EMBEDDING_DIM)
            self.lstm = nn.LSTM(EMBEDDING_DIM, UNITS, batch_first=True, bidirectional=True)
            self.hidden = nn.Linear(2 * UNITS, 50)
            self.out = nn.Linear(50, len(KERAS_LABELS))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            steps, _ = self.lstm(self.embedding(ids))  # padding ids run through the LSTM, as in Keras
            pooled = steps.max(dim=1).values
            return torch.sigmoid(self.out(torch.relu(self.hidden(pooled))))

    return BiLstmToxicity()


def load_weights(network: torch.nn.Module, weights: Path) -> None:
    """Keras 3 ``.weights.h5`` -> the torch module. Keras' LSTM gates are (i, f, c, o), torch's
    (i, f, g, o): the same order; kernels are transposed, and Keras' one bias goes to ``bias_ih``."""
    import h5py
    import torch

    def read(group: Any, index: int) -> torch.Tensor:
        return torch.from_numpy(group["vars"][str(index)][()].astype("float32"))

    with h5py.File(weights, "r") as h5:
        layers = h5["layers"]
        state = {
            "embedding.weight": read(layers["embedding"], 0),
            "hidden.weight": read(layers["dense"], 0).T,
            "hidden.bias": read(layers["dense"], 1),
            "out.weight": read(layers["dense_1"], 0).T,
            "out.bias": read(layers["dense_1"], 1),
        }
        for direction, suffix in (("forward_layer", ""), ("backward_layer", "_reverse")):
            cell = layers["bidirectional"][direction]["cell"]
            state[f"lstm.weight_ih_l0{suffix}"] = read(cell, 0).T
            state[f"lstm.weight_hh_l0{suffix}"] = read(cell, 1).T
            state[f"lstm.bias_ih_l0{suffix}"] = read(cell, 2)
            state[f"lstm.bias_hh_l0{suffix}"] = torch.zeros(4 * UNITS)
    network.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True)


class BiLstmToxicity:
    """The loaded model: ``predict`` for the runner; ``score_sequences`` and ``predict_reference``,
    the plain padded path, for exact parity checks."""

    def __init__(self, config: BiLstmConfig) -> None:
        import torch

        model_dir = Path(config.model_dir) if config.model_dir else package_model_dir()
        self.config = config
        self.placement: Placement = choose_placement(config.device, "fp32")  # small: fp32 everywhere
        self.tokenizer = load_tokenizer(model_dir / "tokenizer.pickle")
        network = build_network()
        load_weights(network, model_dir / "model.weights.h5")
        self.network = network.to(self.placement.device).eval()
        self.shortcut = PaddingShortcut(self.network, MAXLEN)
        self._torch = torch

    def score_sequences(self, rows: list[list[int]]) -> list[list[float]]:
        """The six sigmoid outputs (KERAS_LABELS' order) for rows of ``MAXLEN`` ids."""
        if not rows:  # an LSTM refuses an empty batch
            return []
        torch = self._torch
        with torch.inference_mode():
            ids = torch.tensor(rows, dtype=torch.long, device=self.placement.device)
            scores: list[list[float]] = self.network(ids).float().cpu().tolist()
        return scores

    def classify_like_original(self, texts: list[str]) -> list[dict[str, float]]:
        """What the package's ``classify`` returns (its label names, its last-100-words view)."""
        rows = [pad_front(self.tokenizer.to_sequence(text)) for text in texts]
        return [dict(zip(KERAS_LABELS, row, strict=True)) for row in self.score_sequences(rows)]

    def predict(self, texts: list[str]) -> list[dict[str, float]]:
        """The guard's scores (its category names), the maximum over each text's windows."""
        owners, rows = self._windows(texts, pad=False)
        scores: list[list[float]] = self.shortcut.score(rows).float().cpu().tolist()
        return _best_per_text(len(texts), owners, scores)

    def predict_reference(self, texts: list[str]) -> list[dict[str, float]]:
        """``predict`` without the padding shortcut: every window padded to 100 ids and run in full."""
        owners, rows = self._windows(texts, pad=True)
        return _best_per_text(len(texts), owners, self.score_sequences(rows))

    def _windows(self, texts: list[str], *, pad: bool) -> tuple[list[int], list[list[int]]]:
        owners: list[int] = []
        rows: list[list[int]] = []
        for owner, text in enumerate(texts):
            sequence = self.tokenizer.to_sequence(text)
            for window in windows(sequence, self.config.max_windows, pad=pad):
                owners.append(owner)
                rows.append(window)
        return owners, rows


def _best_per_text(count: int, owners: list[int], scores: list[list[float]]) -> list[dict[str, float]]:
    best = [[0.0] * len(CATEGORIES) for _ in range(count)]
    for owner, row in zip(owners, scores, strict=True):
        best[owner] = [max(a, b) for a, b in zip(best[owner], row, strict=True)]
    return [dict(zip(CATEGORIES, row, strict=True)) for row in best]


def load_bilstm(config: BiLstmConfig) -> Callable[[list[str]], list[dict[str, float]]]:
    return BiLstmToxicity(config).predict
