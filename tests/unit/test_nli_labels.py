"""NLI heads name their labels in several layouts; each must be read with the meaning it has."""

from __future__ import annotations

import pytest
import torch

from guards.models.nli_model import _label_roles, scores_from_logits


@pytest.mark.parametrize(
    ("id2label", "roles"),
    [
        ({0: "contradiction", 1: "neutral", 2: "entailment"}, ["contradiction", "neutral", "entailment"]),
        ({0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"}, ["entailment", "neutral", "contradiction"]),
        ({0: "entailment", 1: "not_entailment"}, ["entailment", "neutral"]),
        ({0: "not-entailment", 1: "Entailment"}, ["neutral", "entailment"]),
        ({0: "consistent", 1: "inconsistent"}, ["entailment", "contradiction"]),
        ({0: "supported", 1: "unsupported", 2: "refuted"}, ["entailment", "neutral", "contradiction"]),
        ({0: "LABEL_0", 1: "LABEL_1"}, ["neutral", "neutral"]),
    ],
)
def test_label_names_are_matched_whole_never_by_substring(id2label: dict[int, str], roles: list[str]) -> None:
    assert [_label_roles(id2label)[i] for i in sorted(id2label)] == roles


def test_mnli_logits_give_each_role_its_probability() -> None:
    roles = _label_roles({0: "contradiction", 1: "neutral", 2: "entailment"})
    (scores,) = scores_from_logits(torch.tensor([[0.0, 0.0, 8.0]]), roles)
    assert scores["entailment"] > 0.99
    assert scores["contradiction"] < 0.01


def test_a_binary_head_saying_not_entailed_never_reads_as_support() -> None:
    roles = _label_roles({0: "entailment", 1: "not_entailment"})
    not_entailed, entailed = scores_from_logits(torch.tensor([[-4.0, 4.0], [4.0, -4.0]]), roles)
    assert not_entailed["entailment"] < 0.01
    assert not_entailed["neutral"] > 0.99
    assert not_entailed["contradiction"] == 0.0  # a binary head cannot say "contradicted"
    assert entailed["entailment"] > 0.99


def test_a_consistency_head_saying_inconsistent_reads_as_contradiction() -> None:
    roles = _label_roles({0: "consistent", 1: "inconsistent"})
    (scores,) = scores_from_logits(torch.tensor([[-4.0, 4.0]]), roles)
    assert scores["contradiction"] > 0.99
    assert scores["entailment"] < 0.01


def test_hhem_one_logit_is_the_probability_of_consistency() -> None:
    consistent, inconsistent = scores_from_logits(torch.tensor([[5.0], [-5.0]]), {0: "entailment"})
    assert consistent["entailment"] > 0.99
    assert inconsistent["contradiction"] > 0.99
