"""A reward model's input, in one place: what ``hhh feedback train-reward`` trains on and what the reward
scorer reads at serving time (``guards.models.reward_model``), so the two can never drift apart.

A reward model reads one text: the prompt as one text (TRL's ``prompt`` column, made by
``feedback.preferences.formats.dataset_prompt``) followed directly by the answer and the tokenizer's
end-of-sequence token, as TRL's RewardTrainer (1.x) makes a standard row's text: it joins prompt and
completion, appends the EOS token unless the completion already ends with it, and tokenizes that with
the tokenizer's own special tokens (BERT: ``[CLS] … [SEP] [SEP]``, the first ``[SEP]`` being the EOS).
Training hands TRL texts already made here (no prompt column), so TRL appends nothing more.

TRL leaves out training texts longer than ``max_length``; a scorer cannot leave an answer out, so it
cuts from the left: the prompt's beginning goes first, and the answer's end and the EOS token, where a
decoder reward model reads its score, stay.

This module imports nothing of the project: training (``feedback``) may use it without loading the
guards. A tokenizer here is any Hugging Face tokenizer, taken as it comes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Recorded in ``reward_training.json``; the scorer refuses a model trained on another format.
REWARD_FORMAT = "prompt+answer+eos"
# Characters kept of a text before tokenizing, per token of ``max_length``: the tokenizer then cuts the
# rest. This bounds the work a huge prompt or answer costs (tokenizing all of it would take seconds
# for nothing); no token of natural text is longer, so what the model reads is unchanged.
CHARS_PER_TOKEN_KEPT = 64


def reward_text(prompt: str, answer: str, end: str = "") -> str:
    """The one text a reward model scores for ``answer`` to ``prompt``; ``end`` is the tokenizer's EOS
    token (``end_token``), added as TRL adds it: unless the answer already ends with it.

    >>> reward_text("Name a colour.", " Blue.")
    'Name a colour. Blue.'
    >>> reward_text("Name a colour.", " Blue.", "[SEP]"), reward_text("Hi", "[SEP]", "[SEP]")
    ('Name a colour. Blue.[SEP]', 'Hi[SEP]')
    """
    return prompt + answer + (end if end and not answer.endswith(end) else "")


def end_token(tokenizer: Any) -> str:
    """The token TRL appends: the EOS token; an encoder without one (BERT) ends a text with ``[SEP]``."""
    end = tokenizer.eos_token or tokenizer.sep_token
    if not end:
        raise ValueError("the tokenizer has neither an EOS nor a SEP token to end a text with")
    return str(end)


def prepare_tokenizer(tokenizer: Any) -> Any:
    """``tokenizer`` set up as training and scoring both use it (saved so with the trained model):
    EOS as ``end_token`` says, padding with EOS when it has no pad token (decoders, as TRL does), padded
    on the right (TRL's collator), cut on the left (see above)."""
    if tokenizer.eos_token is None:
        tokenizer.eos_token = end_token(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    tokenizer.truncation_side = "left"
    return tokenizer


def reward_inputs(tokenizer: Any, items: Sequence[tuple[str, str]], max_length: int) -> dict[str, Any]:
    """The model's inputs for (prompt, answer) pairs: token ids and attention mask (what TRL's collator
    gives the model, nothing else), padded to the longest in the batch, each cut to ``max_length``
    tokens. ``tokenizer`` must have been through ``prepare_tokenizer``."""
    end = end_token(tokenizer)
    keep = max_length * CHARS_PER_TOKEN_KEPT
    texts = [reward_text(prompt, answer, end)[-keep:] for prompt, answer in items]
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
