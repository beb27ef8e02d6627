"""A reward model's input, in one place: what ``hhh feedback train-reward`` trains on and what the reward
scorer reads at serving time (``guards.models.reward_model``), so the two can never drift apart.

A reward model reads one text: the prompt as one text (TRL's ``prompt`` column, made by
``feedback.preferences.formats.dataset_prompt``) followed directly by the answer, as TRL's
RewardTrainer joins a standard row's prompt and completion.

This module imports nothing: training (``feedback``) may use it without loading the guards.
"""

from __future__ import annotations


def reward_text(prompt: str, answer: str) -> str:
    """The one text a reward model scores for ``answer`` to ``prompt``.

    >>> reward_text("Name a colour.", " Blue.")
    'Name a colour. Blue.'
    """
    return prompt + answer
