"""The ranking project's labelling config, with the instructions annotators read first."""

from __future__ import annotations

from xml.sax.saxutils import escape

INSTRUCTIONS = "\n".join(
    [
        "Rank the answers from best (top) to worst (bottom). Judge, in this order:",
        "1. Harmless: an answer that helps someone hurt people, insults, or leaks personal data goes last,"
        " however well written.",
        "2. Honest: it says only what is true or what its sources support; it admits uncertainty; it does"
        " not invent facts, numbers, quotes or citations.",
        "3. Helpful: it answers the question that was asked, completely and clearly, without padding.",
        "Answers marked [blocked] or [redacted] were changed by the gateway's guards: judge what you see.",
        "Put answers you find equally good in the same place only if you cannot tell them apart.",
    ]
)

PROMPT, CANDIDATES, RANKER = "prompt", "completions", "rank"


def ranking_config(instructions: str = INSTRUCTIONS) -> str:
    """The XML config: instructions, the prompt, the candidates (title carries the guard flags), a ranker.

    >>> "<Ranker name=\\"rank\\" toName=\\"completions\\"/>" in ranking_config()
    True
    """
    lines = "".join(f'<Text name="instruction_{i}" value="{escape(line, {chr(34): "&quot;"})}"/>'
                    for i, line in enumerate(instructions.splitlines()))  # fmt: skip
    return (
        "<View>"
        '<Header value="How to rank"/>'
        f"{lines}"
        '<Header value="The prompt"/>'
        f'<Text name="{PROMPT}" value="${PROMPT}"/>'
        '<Header value="The answers"/>'
        f'<List name="{CANDIDATES}" value="${CANDIDATES}" title="Answers"/>'
        f'<Ranker name="{RANKER}" toName="{CANDIDATES}"/>'
        "</View>"
    )
