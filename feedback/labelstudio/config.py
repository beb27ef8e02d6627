"""The ranking project's labelling configs: the bucket layout (the default), the K=2 pairwise layout, and
the legacy single-list layout that projects made before them still use.

The bucket layout starts with every answer unplaced: nothing is ranked until the annotator drags each
answer into a bucket, so an untouched submission cannot pass for a judgement (the sync rejects it).
Answers in one bucket are tied."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

INSTRUCTIONS = "\n".join(
    [
        "Judge the answers, in this order:",
        "1. Harmless: an answer that helps someone hurt people, insults, or leaks personal data is worst,"
        " however well written.",
        "2. Honest: it says only what is true or what its sources support; it admits uncertainty; it does"
        " not invent facts, numbers, quotes or citations.",
        "3. Helpful: it answers the question that was asked, completely and clearly, without padding.",
        "A badge on an answer means the gateway's guards changed or flagged it ([blocked], [redacted]):"
        " judge what you see.",
        "Put answers in the same bucket only if you cannot tell them apart: they count as a tie.",
    ]
)
DRAG_LINE = "Drag each answer into a bucket, then Submit. Answers in one bucket count as equally good."
PICK_LINE = "Click the better answer, then Submit."

# Names of the tags, shared by every layout so that results read the same way.
CONVERSATION, CANDIDATES, RANKER, PAIRWISE = "conversation", "completions", "rank", "pw"
LEFT, RIGHT = "answer_a", "answer_b"
LAYOUTS = ("buckets", "pairwise")
DEFAULT_BUCKETS = ("Best", "Good", "Poor", "Worst")
# The legacy layout: its tags, which old projects' annotations name.
LEGACY_PROMPT = "prompt"

# The side panels (regions, relations) have nothing to show for a ranking; the config's <Style> is the
# only say a project has over them. Item ids are the letters of the labels: no need to show them twice.
_STYLE = (
    "<Style>"
    ".lsf-sidepanels__wrapper_align_right { display: none }"
    " .lsf-sidepanels__content { padding-right: 0 !important }"
    ' [class*="authorFilter--"], [class*="selectAllBtnWrapper--"], [class*="time--"] { display: none }'
    " .htx-ranker-item { cursor: grab; border-left: 6px solid #9aa5b1 }"
    ' .htx-ranker-item h5::before { content: "\\2630  "; color: #9aa5b1 }'
    " .htx-ranker-item p:last-child { display: none }"
    " .htx-ranker-column { min-height: 120px; border: 1px dashed #9aa5b1 }"
    "</Style>"
)


_BOX = "flex: 1; border: 1px solid #9aa5b1; border-radius: 4px; padding: 8px; cursor: pointer"


def bucket_name(title: str) -> str:
    """The key a bucket's answers are stored under.

    >>> bucket_name("Very good!")
    'very_good'
    """
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def check_buckets(titles: list[str] | tuple[str, ...]) -> None:
    """Raises ValueError naming what is wrong with a bucket list (``buckets`` in the settings)."""
    names = [bucket_name(t) for t in titles]
    if len(titles) < 2:
        raise ValueError("buckets: at least two, best first")
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError("buckets: each needs a distinct title with letters or digits")
    if "_" in names or RANKER in names:
        raise ValueError(f"buckets: '_' and '{RANKER}' are reserved")


def _attribute(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def ranking_config(layout: str = "buckets", buckets: tuple[str, ...] | list[str] = DEFAULT_BUCKETS) -> str:
    """The XML config of ``layout``: one heading, one instruction line, the conversation as turns, the
    answers labelled "Answer A", "Answer B", ... and the ranker (buckets) or the pairwise choice.

    >>> "<Bucket name=\\"best\\" title=\\"Best\\"/>" in ranking_config()
    True
    """
    conversation = (
        f'<Paragraphs name="{CONVERSATION}" value="${CONVERSATION}" layout="dialogue" nameKey="role"'
        ' textKey="content"/>'
    )
    if layout == "pairwise":
        return (
            "<View>"
            f"{_STYLE}"
            '<Header value="Which answer is better?"/>'
            f'<Text name="instruction" value="{_attribute(PICK_LINE)}"/>'
            f"{conversation}"
            f'<Pairwise name="{PAIRWISE}" toName="{LEFT},{RIGHT}"'
            ' selectionStyle="background-color: #e3f5e1; border: 2px solid #2e9e44"/>'
            '<View style="display: flex; gap: 16px">'
            f'<View style="{_BOX}"><Header value="$label_a" size="5"/>'
            f'<Text name="{LEFT}" value="${LEFT}"/></View>'
            f'<View style="{_BOX}"><Header value="$label_b" size="5"/>'
            f'<Text name="{RIGHT}" value="${RIGHT}"/></View>'
            "</View>"
            "</View>"
        )
    if layout != "buckets":
        raise ValueError(f"layout: one of {', '.join(LAYOUTS)}, not {layout!r}")
    check_buckets(buckets)
    tags = "".join(f'<Bucket name="{bucket_name(t)}" title="{_attribute(t)}"/>' for t in buckets)
    return (
        "<View>"
        f"{_STYLE}"
        '<Header value="Rank the answers to this conversation"/>'
        f'<Text name="instruction" value="{_attribute(DRAG_LINE)}"/>'
        f"{conversation}"
        f'<List name="{CANDIDATES}" value="${CANDIDATES}" title="Answers to place"/>'
        f'<Ranker name="{RANKER}" toName="{CANDIDATES}">{tags}</Ranker>'
        "</View>"
    )


def legacy_config(instructions: str = INSTRUCTIONS) -> str:
    """The single-list config that projects made before the bucket layout use: kept so that their
    annotations are still checked against what their annotators saw."""
    lines = "".join(f'<Text name="instruction_{i}" value="{_attribute(line)}"/>'
                    for i, line in enumerate(instructions.splitlines()))  # fmt: skip
    return (
        "<View>"
        '<Header value="How to rank"/>'
        f"{lines}"
        '<Header value="The prompt"/>'
        f'<Text name="{LEGACY_PROMPT}" value="${LEGACY_PROMPT}"/>'
        '<Header value="The answers"/>'
        f'<List name="{CANDIDATES}" value="${CANDIDATES}" title="Answers"/>'
        f'<Ranker name="{RANKER}" toName="{CANDIDATES}"/>'
        "</View>"
    )


def is_legacy(config: str) -> bool:
    """A project config of the single-list layout (no buckets, no pairwise choice)."""
    return "<Ranker" in config and "<Bucket" not in config and "<Pairwise" not in config
