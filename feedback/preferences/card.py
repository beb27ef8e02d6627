"""The dataset card: what is in an export, where it came from, and the choices that made it."""

from __future__ import annotations

import datetime
from collections import Counter

from feedback.preferences.export import ExportOptions, Gathered

FORMAT_FIELDS = {
    "trl": "`prompt`, `chosen`, `rejected` (text){margin} — TRL's standard preference format",
    "trl-conversational": "`prompt` (messages), `chosen`, `rejected` (one assistant message each){margin} — "
    "TRL's conversational preference format",
    "openai-preference": "`input.messages`, `preferred_output`, `non_preferred_output` — OpenAI preference "
    "fine-tuning",
    "hh-rlhf": "`chosen`, `rejected`: the dialogue as `\\n\\nHuman: …\\n\\nAssistant: …` — Anthropic HH-RLHF",
}


def _pairs(count: int) -> str:
    return f"{count} pair" if count == 1 else f"{count} pairs"


def _rate(value: float | None) -> str:
    return "n/a (no task had two annotators)" if value is None else f"{value:.1%}"


def _by_source(counts: dict[str, int]) -> str:
    made = sorted((k.removeprefix("pairs_"), v) for k, v in counts.items() if k.startswith("pairs_"))
    return ", ".join(f"{source} {count}" for source, count in made)


def _header(stems: dict[str, str]) -> str:
    def files(folder: str, ext: str) -> str:
        return "".join(
            f"\n  - split: {split}\n    path: {folder}/{stem}.{ext}" for split, stem in stems.items()
        )

    return (
        "---\nconfigs:\n- config_name: default\n  data_files:"
        + files("jsonl", "jsonl")
        + "\ntags:\n- preference\n- reward-modeling\n- rlhf\n---\n"
    )


def dataset_card(
    gathered: Gathered,
    options: ExportOptions,
    written: dict[str, int],
    stems: dict[str, str],
    labelstudio_url: str | None,
    policies: Counter[str],
) -> str:
    counts = gathered.counts
    report = gathered.agreement
    margin = ", `margin`" if options.margin and options.format in ("trl", "trl-conversational") else ""
    projects = ", ".join(str(p) for p in gathered.projects) or "none"
    lines = [
        _header(stems),
        "# HHH Gateway preference dataset\n",
        "Pairs of answers to the same prompt, the preferred one as `chosen`, from people ranking the "
        "gateway's recorded answers in Label Studio and from users' feedback sent to `POST /v1/feedback`.\n",
        f"- Exported: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- Source: Label Studio {labelstudio_url or '(not configured)'}, project(s) {projects}",
        f"- Format: `{options.format}`: {FORMAT_FIELDS[options.format].format(margin=margin)}",
        '- Load: `datasets.load_dataset("<this folder>")` (JSON lines), or '
        '`datasets.load_dataset("<this folder>/parquet")` (the same rows as Parquet)',
        "",
        "## Counts\n",
        "| split | pairs |",
        "|---|---|",
        *[f"| {split} | {count} |" for split, count in written.items()],
        "",
        f"Ranking tasks: {counts.get('tasks', 0)}, with {counts.get('annotations', 0)} annotations. "
        f"User feedback events: {counts.get('feedback', 0)} "
        f"({counts.get('feedback_unmatched', 0)} about completions no longer recorded).",
        "",
        "Pairs made, by source: "
        + (_by_source(counts) or "none")
        + ". Dropped: "
        + f"{counts.get('dropped_blocked', 0)} with a blocked answer, "
        f"{counts.get('dropped_redacted', 0)} with a redacted answer, "
        f"{counts.get('dropped_identical', 0)} with identical answers, "
        f"{counts.get('dropped_duplicates', 0)} duplicates.",
        "",
        "## How it was made\n",
        f"- Aggregation across annotators: `{options.aggregation}`"
        + {
            "none": " (one row per annotator's judgement; disagreements stay in the data)",
            "majority": " (the side more annotators preferred; even votes give no pair)",
            "bradley-terry": " (pairs ordered by a Bradley-Terry fit of all annotators' judgements)",
        }[options.aggregation],
        "- A ranking of K answers gives C(K,2) pairs. Ties: "
        + ("a pair with margin 0 (its order carries no meaning)" if options.ties else "no pair"),
        f"- Margin column: {'yes' if margin else 'no'}",
        f"- Answers a guard blocked (their text is the gateway's refusal): {options.blocked}d",
        f"- Answers a guard redacted: {options.redacted}d; redacted text stays redacted (placeholders such "
        "as `<PERSON>`): the gateway never recorded the original",
        "- Prompts: as the upstream received them, after the input guards' redaction",
        f"- Tenants: {', '.join(options.tenants) or 'all'}; ranking tasks with at least "
        f"{options.min_annotators} annotator(s) ({counts.get('tasks_too_few_annotators', 0)} with fewer "
        "left out)",
        f"- Split by prompt (no prompt in both): test fraction {options.test_fraction}, "
        f"seed `{options.split_seed}`",
        "- Guard policies the answers were served under: "
        + ", ".join(f"`{name}` ({_pairs(count)})" for name, count in sorted(policies.items())),
        "",
        "## Annotator agreement\n",
        f"Pairwise agreement: {_rate(report.rate)} over {report.comparisons} comparisons "
        f"({report.tasks_with_overlap} of {report.tasks} tasks ranked by two or more annotators). Two "
        "annotators agree on two answers when they order them the same way (or both tie them).",
        "",
        "| annotator | annotations | comparisons | agreement |",
        "|---|---|---|---|",
        *[
            f"| {a.annotator} | {a.annotations} | {a.comparisons} | {_rate(a.rate)} |"
            for a in report.annotators
        ],
        "",
        "Row provenance (prompt id, task, source, annotator, candidate ids, guard flags) is in `meta/`, one "
        "line per row in the same order.",
        "",
    ]
    return "\n".join(lines)
