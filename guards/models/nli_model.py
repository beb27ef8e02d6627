"""NLI cross-encoders by model id or local path: MNLI-style (entailment / neutral / contradiction) or
HHEM-style (one "consistent" probability). Premise = evidence, hypothesis = claim."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from guards.devices import Placement, Precision, choose_placement, inference_context, place_model


class LoadedNli(msgspec.Struct):
    # (evidence, claim) pairs → {"entailment": p, "neutral": p, "contradiction": p}
    predict: Callable[[list[tuple[str, str]]], list[dict[str, float]]]
    placement: Placement


# Label names seen on NLI and factual-consistency heads, matched as whole names (never by substring:
# "not_entailment" contains "entail" and "inconsistent" contains "consistent").
_ENTAILMENT = {"entailment", "entailed", "entails", "consistent", "supported", "support", "true", "factual"}
_CONTRADICTION = {
    "contradiction", "contradicted", "contradicts", "inconsistent", "hallucinated", "hallucination",
    "refuted", "refutes", "false", "unfaithful",
}  # fmt: skip


def _label_role(label: str) -> str:
    """The role of one label name: ``entailment``, ``contradiction`` or ``neutral``.

    A negated entailment ("not_entailment", "non-entailment", "unsupported") is neutral: a binary head
    says the claim is not backed, never that it is contradicted.

    >>> [_label_role(x) for x in ("ENTAILMENT", "not_entailment", "Inconsistent", "consistent", "LABEL_1")]
    ['entailment', 'neutral', 'contradiction', 'entailment', 'neutral']
    """
    name = "_".join(re.findall(r"[a-z0-9]+", label.lower()))
    if name in _ENTAILMENT:
        return "entailment"
    if name in _CONTRADICTION:
        return "contradiction"
    return "neutral"


def _label_roles(id2label: dict[int, str]) -> dict[int, str]:
    return {index: _label_role(label) for index, label in id2label.items()}


def scores_from_logits(logits: Any, roles: dict[int, str]) -> list[dict[str, float]]:
    """A batch of logits → per pair ``{"entailment", "neutral", "contradiction"}`` probabilities.

    One logit (HHEM-style) is the probability that the claim is consistent; otherwise a softmax over the
    labels, each added to its role.
    """
    import torch

    if logits.shape[-1] == 1:
        consistent = torch.sigmoid(logits[:, 0]).cpu().tolist()
        return [{"entailment": p, "neutral": 0.0, "contradiction": 1.0 - p} for p in consistent]
    results = []
    for row in torch.softmax(logits, dim=-1).cpu().tolist():
        scores = {"entailment": 0.0, "neutral": 0.0, "contradiction": 0.0}
        for index, p in enumerate(row):
            scores[roles[index]] += p
        results.append(scores)
    return results


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
        return scores_from_logits(logits, roles)

    return LoadedNli(predict, placement)
