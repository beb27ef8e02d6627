"""The dataset card: what is in an export, where it came from, and the choices that made it."""

from __future__ import annotations

import datetime
from collections import Counter

from feedback.preferences.ai_feedback import SOURCES, AiHumanAgreement, group_of
from feedback.preferences.export import ExportOptions, Gathered
from feedback.preferences.quality import BIAS_Z, MIN_RANKINGS, AnnotatorQuality
from feedback.preferences.reward_agreement import RewardAgreement

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


def data_files_header(
    stems: dict[str, str], tags: tuple[str, ...] = ("preference", "reward-modeling", "rlhf")
) -> str:
    """The card's YAML header: it lets ``datasets.load_dataset(folder)`` find the JSON-lines splits."""
    files = "".join(f"\n  - split: {split}\n    path: jsonl/{stem}.jsonl" for split, stem in stems.items())
    return (
        "---\nconfigs:\n- config_name: default\n  data_files:"
        + files
        + "\ntags:"
        + "".join(f"\n- {tag}" for tag in tags)
        + "\n---\n"
    )


def _sources_table(gathered: Gathered, options: ExportOptions) -> list[str]:
    """Pairs per source: made (before hygiene) and kept, and whether the source was selected."""
    made: Counter[str] = Counter()
    for key, count in gathered.counts.items():
        if key.startswith("pairs_"):
            made[group_of(key.removeprefix("pairs_"))] += count
    kept = Counter(group_of(pair.comparison.source) for pair in gathered.pairs)
    selected = options.selected
    return [
        "| source | selected | pairs made | pairs kept |",
        "|---|---|---|---|",
        *[
            f"| {source} | {'yes' if source in selected else 'no'} | {made[source]} | {kept[source]} |"
            for source in SOURCES
        ],
    ]


def _ai_agreement(report: AiHumanAgreement | None, critics: dict[str, int]) -> list[str]:
    critic_list = ", ".join(f"`{name}` ({count})" for name, count in sorted(critics.items())) or "none"
    lines = ["## AI feedback and human rankings\n", f"Revisions by critic model: {critic_list}.", ""]
    if report is None:
        lines.append("Agreement not measured: it needs both `human` and `ai-feedback` selected.")
    elif not report.judgements:
        lines.append(
            "Agreement: no overlap (no revision was ranked by people next to the answer it replaced)."
        )
    else:
        lines.append(
            f"Agreement: {report.rate:.1%} of {report.judgements} human judgements of {report.ai_pairs} AI "
            f"pairs put the AI's chosen answer above its rejected one ({report.disagree} below, "
            f"{report.ties} tied; ties count as not agreeing)."
        )
    return [*lines, ""]


def _reward_agreement(found: dict[str, RewardAgreement], options: ExportOptions) -> list[str]:
    """How often people agree with the reward models that picked best-of-n's answers."""
    lines = ["## Reward models and human rankings\n"]
    if "human" not in options.selected:
        lines.append("Not measured: it needs `human` selected.")
    elif not found:
        lines.append("No ranked task had two answers scored by a reward model (best-of-n).")
    else:
        lines += [
            "Best-of-n answers people ranked (shown blind: annotators did not see which one was served, "
            "nor any reward). A human pair is one annotator preferring one of two scored answers; it "
            "agrees when the preferred answer got the higher reward. A falling rate says: retrain.",
            "",
            "| reward model | tasks | human pairs | agree | disagree | reward ties | agreement |",
            "|---|---|---|---|---|---|---|",
            *[
                f"| `{model}` | {a.tasks} | {a.pairs} | {a.agree} | {a.disagree} | {a.reward_ties} | "
                f"{'n/a' if a.rate is None else f'{a.rate:.1%}'} |"
                for model, a in sorted(found.items())
            ],
        ]
    return [*lines, ""]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _bias(quality: AnnotatorQuality) -> str:
    z = quality.bias_z
    if quality.rankings < MIN_RANKINGS or z is None:
        return f"{'n/a' if z is None else f'{z:+.1f}'} (too few rankings to tell)"
    return f"{z:+.1f} ({'**likely position bias**' if quality.position_biased else 'no sign of bias'})"


def _quality(gathered: Gathered, options: ExportOptions) -> list[str]:
    """Gold accuracy and position bias per annotator (``feedback.preferences.quality``)."""
    lines = ["## Annotator quality: gold tasks and position bias\n"]
    if "human" not in options.selected:
        return [*lines, "Not measured: it needs `human` selected.", ""]
    counts = gathered.counts
    threshold = options.min_gold_accuracy
    lines += [
        f"Gold tasks (a known best answer, mixed into the queue; they give no pairs): "
        f"{counts.get('gold_tasks', 0)}, with {counts.get('gold_annotations', 0)} annotations. An answer "
        "is correct when the known best answer is alone in the best place.",
        "",
        "Position bias: answers are shown in a shuffled order, seeded per task. *First shown ranked best* "
        "is how often the answer shown first (Answer A) was ranked best (a share of 1/m when tied with "
        "m-1 others); *chance* is what an annotator who ignores position scores; *z* is the excess in "
        f"standard deviations, reported as likely bias at {BIAS_Z:g} or more over {MIN_RANKINGS} or more "
        "rankings.",
        "",
        "- `--min-gold-accuracy`: "
        + (
            "not set (every annotator kept)"
            if threshold is None
            else f"{threshold:g}: left out {', '.join(gathered.left_out) or 'nobody'} "
            f"({counts.get('annotations_left_out', 0)} annotations); annotators with no gold task are kept"
        ),
        "",
        "| annotator | gold tasks | gold accuracy | rankings | first shown ranked best | chance | z |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {q.annotator}{' (left out)' if q.annotator in gathered.left_out else ''} | {q.gold_tasks} | "
            f"{_percent(q.gold_accuracy)} | {q.rankings} | {_percent(q.first_shown_rate)} | "
            f"{_percent(q.chance_rate)} | {_bias(q)} |"
            for q in gathered.quality.values()
        ],
        "",
    ]
    return lines


def _how_it_was_made(options: ExportOptions, counts: dict[str, int], policies: Counter[str]) -> list[str]:
    margin = options.margin and options.format in ("trl", "trl-conversational")
    return [
        "## How it was made\n",
        f"- Aggregation across annotators: `{options.aggregation}`"
        + {
            "none": " (one row per annotator's judgement; disagreements stay in the data)",
            "majority": " (the side more annotators preferred; even votes give no pair)",
            "bradley-terry": " (pairs ordered by a Bradley-Terry fit of all annotators' judgements)",
        }[options.aggregation],
        "- A ranking of K answers gives C(K,2) pairs. Answers an annotator put in the same bucket are tied. "
        "Ties: "
        + ("a pair with margin 0 (its order carries no meaning)" if options.ties else "no pair")
        + ". Margin: how many occupied places apart the two answers were",
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
    ]


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
    if "ai-feedback" in options.selected and options.format in ("trl", "trl-conversational"):
        margin += ", `source` (human, user-feedback or ai-feedback)"
    projects = ", ".join(str(p) for p in gathered.projects) or "none"
    lines = [
        data_files_header(stems),
        "# HHH Gateway preference dataset\n",
        "Pairs of answers to the same prompt, the preferred one as `chosen`, from the sources selected "
        "below: people ranking the gateway's recorded answers in Label Studio (`human`), users' feedback "
        "sent to `POST /v1/feedback` (`user-feedback`), and a critic model's revisions of answers "
        "(`ai-feedback`: the revision chosen, the answer it replaced rejected).\n",
        f"- Sources selected: {', '.join(options.selected)}",
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
        *_sources_table(gathered, options),
        "",
        f"AI feedback (revisions) read: {counts.get('revisions', 0)} ({counts.get('revisions_gateway', 0)} "
        f"made while serving, {counts.get('revisions_constitute', 0)} offline by `hhh feedback constitute`).",
        "",
        "Pairs made, by kind: "
        + (_by_source(counts) or "none")
        + ". Dropped: "
        + f"{counts.get('dropped_blocked', 0)} with a blocked answer, "
        f"{counts.get('dropped_redacted', 0)} with a redacted answer, "
        f"{counts.get('dropped_identical', 0)} with identical answers, "
        f"{counts.get('dropped_duplicates', 0)} duplicates.",
        "",
        *_how_it_was_made(options, counts, policies),
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
        *_quality(gathered, options),
        *_ai_agreement(gathered.ai_agreement, gathered.critics),
        *_reward_agreement(gathered.reward_agreement, options),
        "Row provenance (prompt id, task, source and its group, annotator, candidate ids, guard flags) is in "
        "`meta/`, one line per row in the same order.",
        "",
    ]
    return "\n".join(lines)
