"""``hhh feedback evaluate-reward``: a reward model's pairwise accuracy on any export, so a new model can be
compared with the serving one before it is switched in.

The pairs are scored by the serving path's own model (``guards.models.reward_model.load_reward_model``:
the same input format, device, precision and length cut as a reward guard or best-of-n with the same
settings), so the figure is what serving would do; the counting is training's (``score_pairs``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.cli.common import configure_logging
from gateway.settings import ConfigError

DESCRIPTION = (
    "Score both answers of every pair of a split of an export (any of the four formats) with the reward "
    "model, as serving scores them, and print the pairwise accuracy: the share of pairs whose chosen "
    "answer gets the higher reward (chance: 50%), with the pairs scored and the ties (equal rewards, "
    "counted as wrong). Pairs the export marks as ties (margin 0) have no order and are left out."
)


def add_evaluate_reward_command(feedback: Any, progress_help: str) -> None:
    evaluate = feedback.add_parser(
        "evaluate-reward", help="pairwise accuracy of a reward model on an export", description=DESCRIPTION
    )
    evaluate.add_argument("--model", required=True, help="a directory saved by train-reward, or a HF id/path")
    evaluate.add_argument(
        "--data", type=Path, required=True, help="a folder written by `hhh feedback export`"
    )
    evaluate.add_argument("--split", default="test", help="which split to score (default: test)")
    evaluate.add_argument("--batch-size", type=int, default=16, help="pairs a model call (16)")
    evaluate.add_argument(
        "--max-length",
        type=int,
        default=512,
        help="tokens of prompt + answer, as the guard's max_length (512)",
    )
    evaluate.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    evaluate.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default="auto")
    evaluate.add_argument("--json", action="store_true", help="print the result as one JSON object")
    evaluate.add_argument("--progress", action="store_true", help=progress_help)
    evaluate.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log verbosity")
    evaluate.set_defaults(handler=evaluate_reward)


def evaluate_reward(args: argparse.Namespace) -> int:
    import msgspec
    from tqdm import tqdm

    from feedback.preferences.reward_training import read_splits, score_pairs
    from guards.config_errors import ConfigValidationError
    from guards.models.reward_model import RewardModelConfig, load_reward_model

    configure_logging(args.log_level or "warning")
    if args.batch_size < 1:
        raise ConfigError("--batch-size: must be at least 1")
    splits = read_splits(args.data)
    rows = splits.get(args.split)
    if not rows:
        known = ", ".join(sorted(splits)) or "none"
        raise ConfigError(
            f"--split: {args.data} has no {args.split!r} split, or it is empty (splits: {known})"
        )
    try:
        config = RewardModelConfig(
            model=args.model,
            device=args.device,
            precision=args.precision,
            max_length=args.max_length,
        )
        loaded = load_reward_model(config)
    except (ConfigValidationError, ValueError) as exc:  # name the option, as the config file's key would be
        key, _, reason = str(exc).partition(": ")
        raise ConfigError(f"--{key.replace('_', '-')}: {reason}") from None
    show = sys.stderr.isatty() or args.progress
    with tqdm(total=len(rows), desc="scoring pairs", unit="pair", disable=not show) as bar:
        result = score_pairs(loaded.predict, rows, args.batch_size, bar.update)
    summary = {
        "model": args.model,
        "data": str(args.data),
        "split": args.split,
        "accuracy": result.accuracy,
        **msgspec.to_builtins(result),
        "device": loaded.placement.key,
        "max_length": config.max_length,
    }
    print(json.dumps(summary) if args.json else _describe(summary))
    return 0 if result.pairs else 1


def _describe(summary: dict[str, Any]) -> str:
    accuracy = summary["accuracy"]
    shown = "n/a (no ordered pairs)" if accuracy is None else f"{accuracy:.1%}"
    lines = [
        f"pairwise accuracy {shown} on {summary['pairs']} pairs of the {summary['split']} split "
        f"({summary['right']} right, {summary['pairs'] - summary['right']} wrong, of which {summary['ties']} "
        f"ties; chance: 50%)",
        f"model {summary['model']} on {summary['device']}, max length {summary['max_length']} tokens",
    ]
    if summary["tied_in_data"]:
        lines.append(f"{summary['tied_in_data']} pairs marked as ties in the data (margin 0) left out")
    return "\n".join(lines)
