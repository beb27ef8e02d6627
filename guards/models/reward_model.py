"""Reward models: any sequence classifier with one output (its logit is the reward), loaded by hub id or
from a directory (what ``hhh feedback train-reward`` saves), scored through the shared batching runner.

Each item is a (prompt, answer) pair, read by ``guards.models.reward_format`` exactly as training read
it (the same text, EOS token, tokenizer set-up and inputs; a test holds the scores to TRL's own
tokenization). One runner per model, device, precision and length serves every policy that names it.

A model that cannot serve as a reward model fails at load with a ``ConfigValidationError`` naming the
config field at fault (``model``, ``max_length``); ``reward_scorer`` puts the caller's key in front.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from guards.config_errors import ConfigValidationError
from guards.devices import (
    DevicePreference,
    Placement,
    Precision,
    choose_placement,
    inference_context,
    place_model,
)
from guards.models.reward_format import REWARD_FORMAT, prepare_tokenizer, reward_inputs
from guards.runner import BatchingRunner, RunnerPool

RewardItem = tuple[str, str]  # (prompt, answer)
TRAINING_RECORD = "reward_training.json"  # what train-reward saves beside the model


class RewardModelConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    model: str  # a directory saved by ``hhh feedback train-reward``, or a Hugging Face id or path
    # auto (CUDA in fp16 when there is a GPU, else the CPU), cpu or cuda.
    device: DevicePreference = "auto"
    # auto, fp32, fp16 (CUDA only) or bf16.
    precision: Precision = "auto"
    # Tokens of prompt + answer; longer texts are cut from the left: the prompt's beginning goes first.
    max_length: int = 512
    # Texts one model call takes at most (the shared batching runner's micro-batch).
    max_batch: int = 16
    # How long the runner waits for more texts before it runs a partial batch.
    max_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model: required (a directory saved by train-reward, or a Hugging Face id)")
        if self.max_length < 8:
            raise ValueError("max_length: must be at least 8 tokens")
        if self.max_batch < 1:
            raise ValueError("max_batch: must be at least 1")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms: must not be negative")

    @property
    def key(self) -> str:
        return f"reward:{self.model}:{self.device}:{self.precision}:{self.max_length}"


class LoadedRewardModel(msgspec.Struct):
    predict: Callable[[list[RewardItem]], list[float]]
    placement: Placement


def load_reward_model(config: RewardModelConfig) -> LoadedRewardModel:
    """The model on its device (CUDA in fp16 when there is one), with a ``predict`` that pads each batch
    to its longest text. Raises ``ConfigValidationError`` for a model that is not a reward model."""
    import torch

    try:
        placement = choose_placement(config.device, config.precision)
    except RuntimeError as exc:  # "device: cuda was asked for, but ..."
        field, _, reason = str(exc).partition(": ")
        raise ConfigValidationError(field, reason) from None
    tokenizer, model = _load(config.model)
    _check_positions(config, tokenizer, model)
    model = place_model(model, placement)
    precision = inference_context(placement)

    @torch.inference_mode()
    def predict(items: list[RewardItem]) -> list[float]:
        inputs = reward_inputs(tokenizer, items, config.max_length)
        with precision():
            logits = model(**{name: value.to(placement.device) for name, value in inputs.items()}).logits
        rewards: list[float] = logits[:, 0].float().cpu().tolist()
        return rewards

    return LoadedRewardModel(predict, placement)


def _load(name: str) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _check_format(name)
    try:
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(name))
        model, loading = AutoModelForSequenceClassification.from_pretrained(name, output_loading_info=True)
    except (OSError, ValueError) as exc:  # not found, not reachable, not a sequence classifier
        raise ConfigValidationError(
            "model", f"cannot load {name!r} as a sequence classifier ({exc})"
        ) from None
    outputs = model.config.num_labels
    if outputs != 1:
        raise ConfigValidationError(
            "model",
            f"{name!r} is not a reward model: a reward model has one output (its logit), it has {outputs}",
        )
    missing = sorted(loading.get("missing_keys") or ())
    if missing:  # e.g. a bare encoder: transformers would give it a fresh, random scoring head
        raise ConfigValidationError(
            "model", f"{name!r} has no trained scoring head ({', '.join(missing)} missing from its weights)"
        )
    if model.config.pad_token_id is None:  # a decoder reads its score at the last token before padding
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def _check_format(name: str) -> None:
    """A model saved by train-reward says which input format it learnt; it must be this one."""
    record = Path(name) / TRAINING_RECORD
    if not record.is_file():
        return  # any other model (a hub id, or saved elsewhere): read in our format
    try:
        trained_on = json.loads(record.read_text()).get("input_format", REWARD_FORMAT)
    except (ValueError, AttributeError):  # not JSON, or not an object
        raise ConfigValidationError("model", f"{record} is not the JSON object train-reward writes") from None
    if trained_on != REWARD_FORMAT:
        raise ConfigValidationError(
            "model",
            f"{name!r} was trained on input format {trained_on!r}; this gateway feeds {REWARD_FORMAT!r}",
        )


def _check_positions(config: RewardModelConfig, tokenizer: Any, model: Any) -> None:
    known = [n for n in (tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None))
             if isinstance(n, int) and 0 < n < 1_000_000]  # fmt: skip
    if known and config.max_length > min(known):
        raise ConfigValidationError(
            "max_length", f"{config.max_length} tokens is more than {config.model!r} reads ({min(known)})"
        )


class RewardScorer:
    """Scores (prompt, answer) pairs with one reward model, micro-batched with every other caller. A call
    larger than ``max_batch`` is cut into batches by the runner."""

    def __init__(self, runner: BatchingRunner[RewardItem, float]) -> None:
        self._runner = runner

    async def score(self, items: Sequence[RewardItem]) -> list[float]:
        return await self._runner.run(items)


async def reward_scorer(config: RewardModelConfig, runners: RunnerPool, config_key: str = "") -> RewardScorer:
    """The scorer for ``config``'s model, loaded once per pool (and warmed up). ``config_key`` (e.g.
    ``guards.reward.config``) is put in front of the field a load error names."""

    def build() -> BatchingRunner[RewardItem, float]:
        try:
            loaded = load_reward_model(config)
        except ConfigValidationError as exc:
            raise ConfigValidationError(".".join(p for p in (config_key, exc.key) if p), exc.reason) from None
        return BatchingRunner(
            f"{config.key}@{loaded.placement.key}",
            loaded.predict,
            max_batch=config.max_batch,
            max_wait_ms=config.max_wait_ms,
            metrics=runners.metrics,
            warmup=[("warm-up prompt", " warm-up answer")],
        )

    return RewardScorer(await runners.get(config.key, build))
