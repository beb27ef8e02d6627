"""Hugging Face sequence classifiers for prompt injection, by model id or local path: Llama Prompt Guard 2
(``LABEL_0`` benign, ``LABEL_1`` malicious), Prompt Guard 1 (``BENIGN`` / ``INJECTION`` / ``JAILBREAK``),
DeBERTa injection models (``SAFE`` / ``INJECTION``) and the like.

Every label but the benign one is a category: ``jailbreak`` when its name says so, ``injection`` otherwise
(``labels`` overrides). A text longer than the model reads is judged whole: the tokenizer cuts it into
overlapping windows, and each category's score is its highest over the windows.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec

from guards.devices import (
    DevicePreference,
    Placement,
    Precision,
    choose_placement,
    inference_context,
    place_model,
)

CATEGORIES = ("injection", "jailbreak")
_BENIGN_NAMES = {"benign", "safe", "label_0", "legit", "legitimate", "normal", "clean", "0"}


class LoadedInjectionClassifier(msgspec.Struct):
    predict: Callable[[list[str]], list[dict[str, float]]]
    categories: list[str]
    placement: Placement


def label_categories(
    id2label: dict[int, str], benign_label: str | None = None, overrides: dict[str, str] | None = None
) -> dict[int, str | None]:
    """Per label index, its category (None: benign).

    >>> label_categories({0: "BENIGN", 1: "INJECTION", 2: "JAILBREAK"})
    {0: None, 1: 'injection', 2: 'jailbreak'}
    >>> label_categories({0: "LABEL_0", 1: "LABEL_1"})
    {0: None, 1: 'injection'}
    >>> label_categories({0: "bad", 1: "ok"}, benign_label="ok", overrides={"bad": "jailbreak"})
    {0: 'jailbreak', 1: None}
    """
    overrides = overrides or {}
    names = {index: label for index, label in id2label.items()}
    if benign_label is not None:
        if benign_label not in names.values():
            known = sorted(names.values())
            raise ValueError(f"benign_label {benign_label!r} is not a label of the model ({known})")
        benign = benign_label
    else:
        found = [label for label in names.values() if _plain(label) in _BENIGN_NAMES]
        if len(found) != 1:
            known = sorted(names.values())
            raise ValueError(f"cannot tell which label is benign among {known}: set benign_label")
        benign = found[0]
    categories: dict[int, str | None] = {}
    for index, label in names.items():
        if label == benign:
            categories[index] = None
        elif label in overrides:
            if overrides[label] not in CATEGORIES:
                raise ValueError(f"labels.{label}: {overrides[label]!r} is not one of {CATEGORIES}")
            categories[index] = overrides[label]
        else:
            categories[index] = "jailbreak" if "jailbreak" in _plain(label) else "injection"
    return categories


def _plain(label: str) -> str:
    return "_".join(re.findall(r"[a-z0-9]+", label.lower()))


def load_injection_classifier(
    model: str,
    *,
    device: DevicePreference = "auto",
    precision: Precision = "auto",
    benign_label: str | None = None,
    labels: dict[str, str] | None = None,
    max_length: int = 512,
    window_overlap: int = 64,
) -> LoadedInjectionClassifier:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    placement = choose_placement(device, precision)
    tokenizer = AutoTokenizer.from_pretrained(model)
    network = place_model(AutoModelForSequenceClassification.from_pretrained(model), placement)
    id2label = {int(index): str(label) for index, label in network.config.id2label.items()}
    roles = label_categories(id2label, benign_label, labels)
    categories = [c for c in CATEGORIES if c in roles.values()]
    autocast = inference_context(placement)
    length = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
    if not 0 <= window_overlap < length // 2:
        raise ValueError("window_overlap must be below half of max_length")

    @torch.inference_mode()
    def predict(texts: list[str]) -> list[dict[str, float]]:
        encoded = tokenizer(
            texts,
            return_tensors="pt",
            padding=True,  # to the batch's longest window, never to max_length
            truncation=True,
            max_length=length,
            stride=window_overlap,
            return_overflowing_tokens=True,
        )
        owners = encoded.pop("overflow_to_sample_mapping").tolist()
        inputs = {key: value.to(placement.device) for key, value in encoded.items()}
        with autocast():
            logits = network(**inputs).logits
        probabilities = torch.softmax(logits.float(), dim=-1).cpu().tolist()
        out: list[dict[str, float]] = [dict.fromkeys(categories, 0.0) for _ in texts]
        for owner, row in zip(owners, probabilities, strict=True):
            window: dict[str, float] = dict.fromkeys(categories, 0.0)
            for index, probability in enumerate(row):
                category = roles.get(index)
                if category is not None:
                    window[category] += probability
            for category, score in window.items():
                out[owner][category] = max(out[owner][category], score)
        return out

    return LoadedInjectionClassifier(predict, categories, placement)
