"""NLI cross-encoders by model id or local path: MNLI-style (entailment / neutral / contradiction) or
HHEM-style (one "consistent" probability). Premise = evidence, hypothesis = claim."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from guards.devices import Placement, Precision, choose_placement, inference_context, place_model


class LoadedNli(msgspec.Struct):
    # (evidence, claim) pairs → {"entailment": p, "neutral": p, "contradiction": p}
    predict: Callable[[list[tuple[str, str]]], list[dict[str, float]]]
    placement: Placement


def _label_roles(id2label: dict[int, str]) -> dict[int, str]:
    roles = {}
    for index, label in id2label.items():
        name = label.lower()
        if "entail" in name or "consistent" in name or name in ("supported", "true"):
            roles[index] = "entailment"
        elif "contra" in name or "hallucinat" in name or name in ("refuted", "false"):
            roles[index] = "contradiction"
        else:
            roles[index] = "neutral"
    return roles


def load_nli(
    model: str, device: Any = "auto", precision: Precision = "auto", max_length: int = 512
) -> LoadedNli:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = Path(model).exists()
    placement = choose_placement(device, precision)
    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local)
    network = place_model(
        AutoModelForSequenceClassification.from_pretrained(model, local_files_only=local), placement
    )
    labels = network.config.num_labels
    roles = _label_roles({int(k): v for k, v in network.config.id2label.items()})
    precision_context = inference_context(placement)

    @torch.inference_mode()
    def predict(pairs: list[tuple[str, str]]) -> list[dict[str, float]]:
        inputs = tokenizer(
            [p for p, _ in pairs], [h for _, h in pairs], padding=True, truncation=True,
            max_length=max_length, return_tensors="pt",
        ).to(placement.device)  # fmt: skip
        with precision_context():
            logits = network(**inputs).logits.float()
        if labels == 1:  # HHEM-style: one logit, the probability that the claim is consistent
            consistent = torch.sigmoid(logits[:, 0]).cpu().tolist()
            return [{"entailment": p, "neutral": 0.0, "contradiction": 1.0 - p} for p in consistent]
        probabilities = torch.softmax(logits, dim=-1).cpu().tolist()
        results = []
        for row in probabilities:
            scores = {"entailment": 0.0, "neutral": 0.0, "contradiction": 0.0}
            for index, p in enumerate(row):
                scores[roles[index]] += p
            results.append(scores)
        return results

    return LoadedNli(predict, placement)
