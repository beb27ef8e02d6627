"""The card of a constitute run: what was asked of whom, against which principles, and what came of it."""

from __future__ import annotations

import datetime
from collections import Counter

import msgspec

from feedback.constitute.output import Written
from feedback.constitute.run import ConstituteOptions, RunSummary
from feedback.constitute.state import Result


class CardFacts(msgspec.Struct, kw_only=True):
    base_url: str
    constitution: str  # "built-in" or the file's path
    constitution_digest: str
    formats: tuple[str, ...]
    recorded: int | None = None  # RevisionEvents recorded (--record), None: not asked
    not_recorded: int = 0


def _split_table(name: str, counts: dict[str, int]) -> str:
    return f"| {name} | {counts.get('train', 0)} | {counts.get('test', 0)} |"


def _ranking_lines(results: list[Result], written: Written) -> list[str]:
    ranked = [r.ranking for r in results if r.ranking is not None]
    if not ranked:
        return ["No AI ranking was asked (`--ai-ranking`): every pair has the revision as `chosen`.", ""]
    choices = Counter(r.choice or "neither" for r in ranked)
    probabilities = [r.probability for r in ranked if r.probability is not None]
    mean = (
        f" (mean probability of the choice {sum(probabilities) / len(probabilities):.3f})"
        if probabilities
        else ""
    )
    return [
        f"The critic compared answer and revision against one drawn principle for {len(ranked)} prompts "
        "(shown in a drawn order): revision preferred "
        f"{choices['revision']}, answer preferred {choices['original']}, neither named {choices['neither']} "
        "(the pair then keeps the revision as `chosen`).",
        f"First-token probabilities of A/B read for {len(probabilities)}{mean}. "
        + ("`margin` = the probability of the choice (TRL formats)." if written.margin else
           "No `margin` column: the server did not give probabilities for every ranking."),
        "",
    ]  # fmt: skip


def run_card(
    options: ConstituteOptions, facts: CardFacts, summary: RunSummary, results: list[Result], written: Written
) -> str:
    used = Counter(p for r in results for p in r.principles)
    failures = (
        ", ".join(f"{reason} ({count})" for reason, count in sorted(summary.failures.items())) or "none"
    )
    recorded = (
        "not asked (`--record`)" if facts.recorded is None
        else f"{facts.recorded} RevisionEvents (origin `constitute`); {facts.not_recorded} not recorded "
        "because the critic's ranking preferred the answer"
    )  # fmt: skip
    return "\n".join([
        "# HHH Gateway Constitutional AI dataset\n",
        "**AI feedback, not human judgement.** Each prompt was answered by a model, and a critic model "
        "critiqued and revised the answer against principles drawn from a written constitution. The "
        "revisions are only as good as the critic: a small critic writes weak ones.\n",
        f"- Made: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}, at {facts.base_url}",
        f"- Model answering: `{options.model}`; critic: `{options.critic_model}`",
        f"- Constitution: {facts.constitution} (digest `{facts.constitution_digest}`)",
        f"- Principles drawn per answer: {options.principles_per_answer}, seed {options.seed}, from "
        + (", ".join(options.principle_pool) or "the whole constitution"),
        f"- Answer: temperature {options.temperature}, max_tokens {options.max_tokens}; critic: greedy",
        f"- Recorded to the event stream: {recorded}",
        "",
        "## Counts\n",
        f"Prompts: {summary.prompts}; done: {len(results)} ({summary.skipped} by an earlier run into this "
        f"folder); failed in the last run: {summary.failed} ({failures}); a rerun tries them again.",
        "",
        "| dataset | train | test |",
        "|---|---|---|",
        _split_table("SFT: `sft/` (`messages`, TRL conversational)", written.sft),
        _split_table(f"preference: `preference/<format>/` ({', '.join(facts.formats)})", written.pairs),
        "",
        f"Pairs left out: {written.dropped_identical} where the revision equals the answer.",
        "",
        "## Principles used\n",
        "| principle | answers |",
        "|---|---|",
        *[f"| {principle} | {count} |" for principle, count in sorted(used.items())],
        "",
        "## AI ranking (RL-CAI)\n",
        *_ranking_lines(results, written),
        "Row provenance (prompt key, principles, critic, ranking) is in each folder's `meta/`.",
        "",
    ])  # fmt: skip
