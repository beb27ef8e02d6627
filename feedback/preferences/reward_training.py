"""`hhh feedback train-reward`: a reward model from an exported preference dataset, with TRL's
RewardTrainer (the pairwise loss -log sigmoid(r_chosen - r_rejected), minus the margin when the data has one).

The model is a sequence classifier with one output: its logit is the reward. Any export format is
accepted: rows are brought to TRL's standard text layout first (a base model without a chat template,
such as a BERT-style encoder, cannot read the conversational one), then each answer is made into the
one text a reward model reads (``guards.models.reward_format``, shared with the scorer that serves the
model: TRL is given those texts, so what it trains on is literally what serving feeds). After training,
the pairwise accuracy on the held-out split (reward of chosen > reward of rejected) is measured through
the same inputs and saved with it, with the input format's name.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from feedback.preferences.formats import dataset_prompt

# The one exception to "feedback imports nothing of guards": the input format, a module that imports
# nothing, so training and scoring cannot drift apart (docs/development.md, "How it is built").
from guards.models.reward_format import (
    REWARD_FORMAT,
    end_token,
    prepare_tokenizer,
    reward_inputs,
    reward_text,
)

Predict = Callable[[list[tuple[str, str]]], list[float]]  # (prompt, answer) pairs → rewards


class TrainingOptions(msgspec.Struct, kw_only=True, frozen=True):
    base: str  # a model id or a local directory
    epochs: float = 1.0
    max_steps: int = -1  # > 0: stop after this many steps, whatever the epochs
    batch_size: int = 16
    learning_rate: float = 5e-5
    max_length: int = 512
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda


class TrainingReport(msgspec.Struct, kw_only=True):
    base: str
    train_pairs: int
    too_long: int  # train pairs over max_length tokens, which TRL leaves out
    test_pairs: int
    steps: int
    train_loss: float | None
    test_accuracy: float | None  # share of held-out pairs the model orders right; chance is 0.5
    device: str
    max_length: int
    input_format: str = REWARD_FORMAT  # what the model reads (guards.models.reward_format)


class PairwiseAccuracy(msgspec.Struct, kw_only=True):
    """How often a reward model orders a dataset's pairs as people did."""

    pairs: int  # pairs scored
    right: int  # the chosen answer's reward above the rejected one's
    ties: int  # both rewards equal: not right (TRL's accuracy counts them so too)
    tied_in_data: int = 0  # rows with margin 0 (tied answers, no order): left out of ``pairs``

    @property
    def accuracy(self) -> float | None:
        return self.right / self.pairs if self.pairs else None


def standard_row(row: dict[str, Any]) -> dict[str, Any]:
    """Any export format's row → TRL's standard layout (prompt optional, chosen, rejected, margin)."""
    if "preferred_output" in row:  # openai-preference
        return {
            "prompt": dataset_prompt(row["input"]["messages"]),
            "chosen": row["preferred_output"][-1]["content"],
            "rejected": row["non_preferred_output"][-1]["content"],
        }
    if isinstance(row.get("prompt"), list):  # trl-conversational
        converted = {
            "prompt": dataset_prompt(row["prompt"]),
            "chosen": row["chosen"][-1]["content"],
            "rejected": row["rejected"][-1]["content"],
        }
        if row.get("margin") is not None:
            converted["margin"] = row["margin"]
        return converted
    return dict(row)  # trl (prompt, chosen, rejected[, margin]) or hh-rlhf (chosen, rejected)


def reward_row(row: dict[str, Any], end: str) -> dict[str, Any]:
    """A standard row as TRL is given it: chosen and rejected each as the one text a reward model reads
    (prompt, answer, ``end`` token), and no prompt column, so TRL adds nothing.

    >>> reward_row({"prompt": "Hi", "chosen": " Hello!", "rejected": " Go.", "margin": 1.0}, "[SEP]")
    {'chosen': 'Hi Hello![SEP]', 'rejected': 'Hi Go.[SEP]', 'margin': 1.0}
    """
    prompt = row.get("prompt", "")
    made = {
        "chosen": reward_text(prompt, row["chosen"], end),
        "rejected": reward_text(prompt, row["rejected"], end),
    }
    if row.get("margin") is not None:
        made["margin"] = row["margin"]
    return made


def score_pairs(
    predict: Predict,
    rows: Sequence[dict[str, Any]],
    batch: int = 32,
    progress: Callable[[int], object] | None = None,
) -> PairwiseAccuracy:
    """Pairwise accuracy of ``predict`` on standard rows, ``batch`` pairs a call; ``progress`` is told how
    many pairs each call scored. Rows marked as ties (margin 0) are counted apart, not scored."""
    ordered = [row for row in rows if row.get("margin") != 0]
    right = ties = 0
    for start in range(0, len(ordered), batch):
        chunk = ordered[start : start + batch]
        prompts = [row.get("prompt", "") for row in chunk]
        chosen = list(zip(prompts, (row["chosen"] for row in chunk), strict=True))
        rejected = list(zip(prompts, (row["rejected"] for row in chunk), strict=True))
        rewards = predict(chosen + rejected)
        for better, worse in zip(rewards[: len(chunk)], rewards[len(chunk) :], strict=True):
            right += better > worse
            ties += better == worse
        if progress is not None:
            progress(len(chunk))
    return PairwiseAccuracy(pairs=len(ordered), right=right, ties=ties, tied_in_data=len(rows) - len(ordered))


def model_predict(model: Any, tokenizer: Any, max_length: int) -> Predict:
    """Rewards from a model in memory, on the inputs the serving scorer makes (``reward_inputs``)."""
    import torch

    prepare_tokenizer(tokenizer)
    device = next(model.parameters()).device

    def predict(items: list[tuple[str, str]]) -> list[float]:
        inputs = reward_inputs(tokenizer, items, max_length)
        with torch.no_grad():
            logits = model(**{name: value.to(device) for name, value in inputs.items()}).logits
        rewards: list[float] = logits[:, 0].float().cpu().tolist()
        return rewards

    return predict


def pairwise_accuracy(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_length: int, batch: int = 32
) -> float | None:
    model.eval()
    return score_pairs(model_predict(model, tokenizer, max_length), rows, batch).accuracy


def read_splits(data: Path) -> dict[str, list[dict[str, Any]]]:
    """An export's splits (``train``, ``test``), each row in TRL's standard layout (``standard_row``)."""
    import datasets

    loaded = datasets.load_dataset(str(data))
    return {split: [standard_row(r) for r in loaded[split]] for split in loaded}


def train_reward_model(data: Path, out: Path, options: TrainingOptions) -> TrainingReport:
    import datasets
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.trainer.reward_config import RewardConfig
    from trl.trainer.reward_trainer import RewardTrainer

    splits = read_splits(data)
    if not splits.get("train"):
        raise ValueError(f"--data: {data} has no train split (export one with `hhh feedback export`)")
    use_cuda = options.device == "cuda" or (options.device == "auto" and torch.cuda.is_available())
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(options.base))  # saved so with the model
    end = end_token(tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(options.base, num_labels=1)
    config = RewardConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        max_length=options.max_length,
        seed=options.seed,
        use_cpu=not use_cuda,
        bf16=use_cuda and torch.cuda.is_bf16_supported(),
        report_to="none",
        save_strategy="no",
        logging_steps=10,
        disable_tqdm=False,
    )
    trainer = RewardTrainer(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_list([reward_row(row, end) for row in splits["train"]]),
        processing_class=tokenizer,
    )
    train_set: Any = trainer.train_dataset  # after TRL's filtering: a Dataset, so it has a length
    result = trainer.train()
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    accuracy = pairwise_accuracy(trainer.model, tokenizer, splits.get("test", []), options.max_length)
    report = TrainingReport(
        base=options.base,
        train_pairs=len(splits["train"]),
        too_long=len(splits["train"]) - len(train_set),
        test_pairs=len(splits.get("test", [])),
        steps=int(result.global_step),
        train_loss=float(result.training_loss) if result.training_loss is not None else None,
        test_accuracy=accuracy,
        device="cuda" if use_cuda else "cpu",
        max_length=options.max_length,
    )
    (out / "reward_training.json").write_text(json.dumps(msgspec.to_builtins(report), indent=2) + "\n")
    (out / "README.md").write_text(_model_card(report, data))
    with contextlib.suppress(OSError):
        (out / "checkpoints").rmdir()  # nothing was saved there (save_strategy "no")
    return report


def _model_card(report: TrainingReport, data: Path) -> str:
    accuracy = "n/a" if report.test_accuracy is None else f"{report.test_accuracy:.1%}"
    return (
        "---\ntags:\n- reward-model\n- trl\n---\n\n# Reward model\n\n"
        "A sequence classifier with one output: its logit is the reward (higher: more preferred). Trained by "
        "`hhh feedback train-reward` with TRL's RewardTrainer (pairwise loss -log sigmoid(r_chosen - "
        "r_rejected)).\n\n"
        f"- Base: `{report.base}`\n- Data: `{data}` ({report.train_pairs} train pairs)\n"
        f"- Steps: {report.steps} on {report.device}; final training loss {report.train_loss}\n"
        f"- Held-out pairwise accuracy: {accuracy} on {report.test_pairs} pairs (chance: 50%)\n"
    )
