"""Reward models: any sequence classifier with one output (its logit is the reward), loaded by hub id or
from a directory (what ``hhh feedback train-reward`` saves), scored through the shared batching runner.

Each item is a (prompt, answer) pair, joined by ``guards.models.reward_format.reward_text`` exactly as
training joined them. One runner per model, device and precision serves every policy that names it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from guards.devices import (
    DevicePreference,
    Placement,
    Precision,
    choose_placement,
    inference_context,
    place_model,
)
from guards.models.reward_format import reward_text
from guards.runner import BatchingRunner, RunnerPool

RewardItem = tuple[str, str]  # (prompt, answer)


class RewardModelConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    model: str  # a directory saved by ``hhh feedback train-reward``, or a Hugging Face id or path
    device: DevicePreference = "auto"
    precision: Precision = "auto"
    max_length: int = 512  # tokens of prompt + answer; longer texts are cut (the answer's end first)
    max_batch: int = 16
    max_wait_ms: float = 2.0

    @property
    def key(self) -> str:
        return f"reward:{self.model}:{self.device}:{self.precision}:{self.max_length}"


class LoadedRewardModel(msgspec.Struct):
    predict: Callable[[list[RewardItem]], list[float]]
    placement: Placement


def load_reward_model(config: RewardModelConfig) -> LoadedRewardModel:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    placement = choose_placement(config.device, config.precision)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    model: Any = AutoModelForSequenceClassification.from_pretrained(config.model)
    labels = model.config.num_labels
    if labels != 1:
        raise ValueError(f"{config.model}: a reward model has one output, this one has {labels}")
    if tokenizer.pad_token is None:  # decoder reward models: pad with EOS, as training did
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    model = place_model(model, placement)
    precision = inference_context(placement)

    @torch.inference_mode()
    def predict(items: list[RewardItem]) -> list[float]:
        texts = [reward_text(prompt, answer) for prompt, answer in items]
        inputs = tokenizer(
            texts, return_tensors="pt", truncation=True, padding=True, max_length=config.max_length
        ).to(placement.device)
        with precision():
            logits = model(**inputs).logits
        rewards: list[float] = logits[:, 0].float().cpu().tolist()
        return rewards

    return LoadedRewardModel(predict, placement)


class RewardScorer:
    """Scores (prompt, answer) pairs with one reward model, micro-batched with every other caller."""

    def __init__(self, runner: BatchingRunner[RewardItem, float]) -> None:
        self._runner = runner

    async def score(self, items: Sequence[RewardItem]) -> list[float]:
        return await self._runner.run(items)


async def reward_scorer(config: RewardModelConfig, runners: RunnerPool) -> RewardScorer:
    """The scorer for ``config``'s model, loaded once per pool (and warmed up)."""

    def build() -> BatchingRunner[RewardItem, float]:
        loaded = load_reward_model(config)
        return BatchingRunner(
            f"{config.key}@{loaded.placement.key}",
            loaded.predict,
            max_batch=config.max_batch,
            max_wait_ms=config.max_wait_ms,
            metrics=runners.metrics,
            warmup=[("warm-up prompt", " warm-up answer")],
        )

    return RewardScorer(await runners.get(config.key, build))
