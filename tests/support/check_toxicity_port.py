"""Checks the PyTorch port of toxic-comment-classifier 0.3.0 (guards/models/bilstm_toxicity.py) against
the original Keras model, in two steps and two environments (TensorFlow is not a project dependency):

1. In a throwaway environment with TensorFlow and the package (Python 3.11)::

       python3.11 -m venv /tmp/tfenv
       /tmp/tfenv/bin/pip install tensorflow-cpu h5py
       /tmp/tfenv/bin/pip install --no-deps toxic-comment-classifier==0.3.0
       /tmp/tfenv/bin/python tests/support/check_toxicity_port.py reference /tmp/reference.json

   runs the package's own ``ToxicCommentClassifier.classify`` on every text of ``texts()``.

2. In the project's environment::

       .venv/bin/python tests/support/check_toxicity_port.py compare /tmp/reference.json

   scores the same texts with the port and fails if any label differs by more than ``TOLERANCE``.
   ``compare --write-expected`` also rewrites ``tests/data/toxicity_port_expected.json``, the fixed
   values the unit tests hold the port to.

This file imports neither torch nor TensorFlow at module level, so each step runs in its own venv.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LABELLED = ROOT / "tests" / "data" / "toxicity_labelled.jsonl"
EXPECTED = ROOT / "tests" / "data" / "toxicity_port_expected.json"
TOLERANCE = 1e-5
# The texts whose original scores are committed for the unit tests.
EXPECTED_TEXTS = (
    "You are so dumb and stupid!",
    "This is wonderful news.",
    "I know where you live and I'm going to make you pay.",
    "People from that country are all thieves and liars.",
    "Shut the fuck up, nobody asked for your opinion.",
    "",
)

_WORDS = (
    "the you are a idiot stupid go kill yourself love this great article thanks wikipedia edit page "
    "fuck shit hate die gay jew muslim black white people country all thieves liars please help "
    "source citation talk user block vandal ass bitch moron pathetic waste space where live pay"
).split()
_NOISE = ("!", "?", "...", ",", " ", "\t", "\n", "'", '"', "-", "_", "@", "#", "é", "ß", "😀", "\u00a0", "\r")


def texts() -> list[str]:
    """The suite's labelled texts, plus generated ones that exercise the preprocessing: case,
    filtered punctuation, whitespace Keras does not split on, non-ASCII, unknown words, empty text,
    and texts longer than the 100-word window (the original truncates at the front)."""
    labelled = [json.loads(line)["text"] for line in LABELLED.read_text().splitlines()]
    rng = random.Random(17)
    generated = [*EXPECTED_TEXTS, "", "   ", "!!!", "zzzqqq unknownword", "YOU ARE AN IDIOT"]
    for index in range(200):
        length = (
            rng.choice((1, 3, 8, 20, 60, 99, 100, 101, 150, 400)) if index % 4 == 0 else rng.randint(1, 30)
        )
        parts = []
        for _ in range(length):
            word = rng.choice(_WORDS)
            word = word.upper() if rng.random() < 0.1 else word
            parts.append(word + (rng.choice(_NOISE) if rng.random() < 0.3 else " "))
        generated.append("".join(parts))
    return labelled + generated


def reference(out: Path) -> None:
    from toxic_classifier.model import ToxicCommentClassifier  # TensorFlow: the throwaway venv only

    classifier = ToxicCommentClassifier()
    rows = [{"text": text, "scores": classifier.classify(text)} for text in texts()]
    out.write_text(json.dumps(rows, ensure_ascii=False))
    print(f"wrote the original's scores for {len(rows)} texts to {out}")


def compare(path: Path, write_expected: bool) -> int:
    sys.path.insert(0, str(ROOT))
    from guards.models.bilstm_toxicity import BiLstmConfig, BiLstmToxicity

    rows: list[dict[str, Any]] = json.loads(path.read_text())
    if [row["text"] for row in rows] != texts():
        print("the reference was computed on other texts: run the reference step again")
        return 2
    model = BiLstmToxicity(BiLstmConfig(device="cpu"))
    ported = model.classify_like_original([row["text"] for row in rows])
    worst = max(
        (abs(row["scores"][label] - mine[label]), label, row["text"])
        for row, mine in zip(rows, ported, strict=True)
        for label in row["scores"]
    )
    long_texts = sum(len(model.tokenizer.to_sequence(row["text"])) > 100 for row in rows)
    print(
        f"{len(rows)} texts ({long_texts} over 100 known words), 6 labels each: "
        f"max |original - port| = {worst[0]:.2e} ({worst[1]} on {worst[2][:60]!r})"
    )
    if write_expected:
        by_text = {row["text"]: row["scores"] for row in rows}
        expected = [{"text": text, "scores": by_text[text]} for text in EXPECTED_TEXTS]
        EXPECTED.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {EXPECTED}")
    return 0 if worst[0] <= TOLERANCE else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("reference", help="score with the original (needs TensorFlow)").add_argument(
        "out", type=Path
    )
    check = steps.add_parser("compare", help="score with the port and compare")
    check.add_argument("reference", type=Path)
    check.add_argument("--write-expected", action="store_true")
    args = parser.parse_args()
    if args.step == "reference":
        reference(args.out)
        return 0
    return compare(args.reference, args.write_expected)


if __name__ == "__main__":
    sys.exit(main())
