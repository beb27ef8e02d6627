"""detoxify checkpoints: by name (downloads, where the network allows) or from a local checkpoint.

A local checkpoint is detoxify's own format: ``{"config": {"arch": {"args": {model_type, model_name,
tokenizer_name, num_classes}}, "dataset": {"args": {"classes": [...]}}}, "state_dict": ...}``. With
``config_dir`` (a Hugging Face config + tokenizer directory) it loads with no network at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from guards.devices import (
    DevicePreference,
    Placement,
    Precision,
    choose_placement,
    inference_context,
    place_model,
)

DetoxifyName = Literal["original", "unbiased", "multilingual", "original-small", "unbiased-small"]

# detoxify's own renaming, so every model reports the same category names.
_STANDARD_NAMES = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}


class DetoxifyConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # original, unbiased or multilingual: downloaded by name unless checkpoint is set.
    model: DetoxifyName = "original"
    # A local checkpoint in detoxify's format (offline).
    checkpoint: str | None = None
    # The model's config and tokenizer directory, for checkpoint.
    config_dir: str | None = None
    # auto (CUDA in fp16 when there is a GPU, else the CPU), cpu or cuda.
    device: DevicePreference = "auto"
    # auto, fp32, fp16 (CUDA only) or bf16.
    precision: Precision = "auto"
    # Texts one model call takes at most (the shared batching runner's micro-batch).
    max_batch: int = 32
    # How long the runner waits for more texts before it runs a partial batch.
    max_wait_ms: float = 2.0
    # Tokens of a text the model reads.
    max_length: int = 512


class LoadedDetoxify(msgspec.Struct):
    predict: Callable[[list[str]], list[dict[str, float]]]
    class_names: list[str]
    placement: Placement


def load_detoxify(config: DetoxifyConfig) -> LoadedDetoxify:
    import torch

    placement = choose_placement(config.device, config.precision)
    if config.checkpoint is None:
        from detoxify import Detoxify

        named = Detoxify(model_type=config.model, device="cpu")  # downloads the published checkpoint
        model, tokenizer, classes = named.model, named.tokenizer, list(named.class_names)
    else:
        model, tokenizer, classes = _from_checkpoint(config.checkpoint, config.config_dir)
    model = place_model(model, placement)
    precision = inference_context(placement)

    @torch.inference_mode()
    def predict(texts: list[str]) -> list[dict[str, float]]:
        inputs = tokenizer(
            texts, return_tensors="pt", truncation=True, padding=True, max_length=config.max_length
        ).to(placement.device)
        with precision():
            logits = model(**inputs).logits
        scores = torch.sigmoid(logits.float()).cpu().tolist()
        return [dict(zip(classes, row, strict=True)) for row in scores]

    return LoadedDetoxify(predict, classes, placement)


def _from_checkpoint(checkpoint: str, config_dir: str | None) -> tuple[Any, Any, list[str]]:
    import torch
    from detoxify.detoxify import get_model_and_tokenizer

    loaded = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "config" not in loaded or "state_dict" not in loaded:
        raise ValueError(f"{checkpoint}: not a detoxify checkpoint (needs 'config' and 'state_dict')")
    arch = dict(loaded["config"]["arch"]["args"])
    if config_dir is not None:
        arch["model_type"] = config_dir  # the architecture's config comes from disk, not the hub
    model, tokenizer = get_model_and_tokenizer(
        **arch, state_dict=loaded["state_dict"], huggingface_config_path=config_dir
    )
    classes = [_STANDARD_NAMES.get(c, c) for c in loaded["config"]["dataset"]["args"]["classes"]]
    return model, tokenizer, classes
