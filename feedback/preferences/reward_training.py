"""`hhh feedback train-reward`: a reward model from an exported preference dataset, with TRL's
RewardTrainer (the pairwise loss -log sigmoid(r_chosen - r_rejected), minus the margin when the data has one).

The model is a sequence classifier with one output: its logit is the reward. Any export format is
accepted: rows are brought to TRL's standard text layout first (a base model without a chat template,
such as a BERT-style encoder, cannot read the conversational one). After training, the pairwise
accuracy on the held-out split (reward of chosen > reward of rejected) is measured and saved with it.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import msgspec

from feedback.preferences.formats import dataset_prompt


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


def _text_pair(row: dict[str, Any]) -> tuple[str, str]:
    prompt = row.get("prompt", "")
    return prompt + row["chosen"], prompt + row["rejected"]


def pairwise_accuracy(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_length: int, batch: int = 32
) -> float | None:
    import torch

    if not rows:
        return None
    model.eval()
    device = next(model.parameters()).device
    right = 0
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            chunk = [_text_pair(r) for r in rows[start : start + batch]]
            texts = [c for c, _ in chunk] + [r for _, r in chunk]
            encoded = tokenizer(
                texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            rewards = model(**encoded.to(device)).logits[:, 0].float()
            chosen, rejected = rewards[: len(chunk)], rewards[len(chunk) :]
            right += int((chosen > rejected).sum().item())
    return right / len(rows)


def _split_rows(data: Path) -> dict[str, list[dict[str, Any]]]:
    import datasets

    loaded = datasets.load_dataset(str(data))
    return {split: [standard_row(r) for r in loaded[split]] for split in loaded}


def train_reward_model(data: Path, out: Path, options: TrainingOptions) -> TrainingReport:
    import datasets
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.trainer.reward_config import RewardConfig
    from trl.trainer.reward_trainer import RewardTrainer

    splits = _split_rows(data)
    if not splits.get("train"):
        raise ValueError(f"--data: {data} has no train split (export one with `hhh feedback export`)")
    use_cuda = options.device == "cuda" or (options.device == "auto" and torch.cuda.is_available())
    tokenizer = AutoTokenizer.from_pretrained(options.base)
    if tokenizer.eos_token is None:  # encoders (BERT) end a text with [SEP]; TRL appends an EOS
        tokenizer.eos_token = tokenizer.sep_token
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
        train_dataset=datasets.Dataset.from_list(splits["train"]),
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
