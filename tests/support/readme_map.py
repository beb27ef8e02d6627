"""Where each section of the old, long README went when it was split into the docs site (issue 22).

``python -m tests.support.readme_map`` prints old heading -> new page. With ``--against REV`` (the
last commit with the long README: 1813c68) it also reads that README from git and checks two things:
every ``##``/``###``/``####`` heading is in ``MOVED``, and every line of prose, table and code of each
section is in its page, word for word once links and heading levels are set aside. It prints what it
cannot find and exits 1 if anything is missing. ``tests/unit/test_readme_map.py`` checks that every
heading below is still a heading of its page.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SPLIT_FROM = "1813c68"  # the last commit whose README held every section

# Old heading (as written, without the #s) -> the page it moved to, under docs/. The heading text is
# kept on that page; only its level changed.
MOVED: dict[str, str] = {
    "Two commands": "getting-started.md",
    "Use your own LLM server": "getting-started.md",
    "Keys and tenants": "getting-started.md",
    "Guardrails": "guards/index.md",
    "PII: placeholders in, values back out": "guards/pii.md",
    "PII: what is redacted where": "guards/pii.md",
    "Grounding: answers checked against their sources": "guards/grounding.md",
    "IP: verbatim reproduction of protected works, and licences in code": "guards/ip.md",
    "Revise: critique and rewrite instead of refusing": "revise.md",
    "Revising a stream": "revise.md",
    "Best-of-n: the reward model picks among answers the guards pass": "best-of-n.md",
    "Reward: a score for every answer": "guards/reward.md",
    "Prompt injection: direct and indirect": "guards/injection.md",
    "Guard quality, measured": "guards/index.md",
    "Recording traffic": "feedback.md",
    "Ranking in Label Studio": "feedback.md",
    "Preference datasets": "datasets.md",
    "Constitutional AI offline: `hhh feedback constitute`": "datasets.md",
    "Training a reward model": "datasets.md",
    "Evaluating a reward model": "datasets.md",
    "API": "api.md",
    "The Responses API": "api.md",
    "Native upstreams (`supports_responses: true`)": "api.md",
    "What translates": "api.md",
    "Errors": "api.md",
    "Security and limits": "security.md",
    "Metrics": "operations.md",
    "Performance": "performance.md",
    "Guard model runner": "performance.md",
    "Toxicity models on the CPU": "performance.md",
    "Output guards on a stream": "performance.md",
    "Grounding guard": "performance.md",
    "IP guard": "performance.md",
    "Reward scoring": "performance.md",
    "Revise": "performance.md",
    "The Responses API against chat completions": "performance.md",
    "How it is built": "development.md",
    "Development": "development.md",
}

# Parts of a section that moved to another page than its heading's (subject pages of their own).
ALSO: dict[str, list[str]] = {
    "Guardrails": ["streaming.md"],  # the "Streams." paragraph
    "Guard quality, measured": [  # each guard's figures moved to its page
        "guards/toxicity.md",
        "guards/pii.md",
        "guards/grounding.md",
        "guards/ip.md",
    ],
}

# Old lines whose "below" or "above" pointed at a section that now lives on another page: the words
# were changed to a link to that page (old line -> what replaced it).
ADJUSTED: dict[str, str] = {
    "| `upstreams[].supports_n` | `true` | `false` for servers that ignore `n` (llama.cpp): see below |": (
        "see [API](api.md)"
    ),
    "  below); `false` keeps plain `<PERSON>` everywhere. A request may turn it off, never on.": (
        "(see [PII](pii.md#pii-placeholders-in-values-back-out)); `false` keeps plain `<PERSON>` everywhere."
    ),
    "`stream_first` mode removes that wait, at the cost of the bound described above.": (
        "at the cost of the bound described in [Streaming](streaming.md)."
    ),
}

# The one quality block became one block per guard page (<!-- quality:toxicity --> and so on).
SPLIT_MARKERS = {"<!-- quality:guards -->", "<!-- /quality:guards -->"}

HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$")


def headings(text: str) -> list[tuple[int, str]]:
    """(level, text) of every Markdown heading outside code fences."""
    found: list[tuple[int, str]] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            found.append((len(match.group(1)), match.group(2)))
    return found


def sections(readme: str) -> list[tuple[str, list[str]]]:
    """The old README cut at its ##/###/#### headings: (heading, its lines)."""
    out: list[tuple[str, list[str]]] = [("(intro)", [])]
    fenced = False
    for line in readme.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = HEADING.match(line) if not fenced else None
        if match and len(match.group(1)) >= 2:
            out.append((match.group(2), []))
        else:
            out[-1][1].append(line)
    return out


def _plain(line: str) -> str:
    """A line with links reduced to their text, so moved links still compare: the old README linked
    repository files ([provenance](guards/ip/...)); the site names them instead
    (provenance (`guards/ip/...`))."""
    line = re.sub(r" \(`[^`\s]*/[^`\s]*`\)", "", line)
    line = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r"\1", line)
    return " ".join(line.replace("`", "").split())


def missing_lines(readme: str) -> dict[str, list[str]]:
    """Per old section, its lines that none of its pages hold (after _plain; ADJUSTED lines aside)."""
    missing: dict[str, list[str]] = {}
    pages = {p: _plain_text(DOCS / p) for p in {*MOVED.values(), *(p for ps in ALSO.values() for p in ps)}}
    intro_pages = [_plain_text(DOCS / "index.md")]
    for heading, lines in sections(readme):
        targets = (
            intro_pages
            if heading == "(intro)"
            else [pages[p] for p in [MOVED[heading], *ALSO.get(heading, [])]]
        )
        lost = [
            line
            for line in lines
            if _plain(line)
            and line not in SPLIT_MARKERS
            and line not in ADJUSTED
            and not any(_plain(line) in t for t in targets)
        ]
        if lost:
            missing[heading] = lost
    return missing


def _plain_text(path: Path) -> str:
    return "\n".join(_plain(line) for line in path.read_text().splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--against", metavar="REV", help=f"check against REV's README.md (e.g. {SPLIT_FROM})")
    args = parser.parse_args(argv)
    for old, page in MOVED.items():
        extra = f" (and {', '.join(ALSO[old])})" if old in ALSO else ""
        print(f"{old:70} -> docs/{page}{extra}")
    if not args.against:
        return 0
    show = ["git", "-C", str(ROOT), "show", f"{args.against}:README.md"]
    readme = subprocess.run(show, capture_output=True, text=True, check=True).stdout
    unmapped = [text for level, text in headings(readme) if level >= 2 and text not in MOVED]
    lost = missing_lines(readme)
    for text in unmapped:
        print(f"not mapped: {text}", file=sys.stderr)
    for heading, lines in lost.items():
        for line in lines:
            print(f"not found ({heading}): {line}", file=sys.stderr)
    not_found = sum(map(len, lost.values()))
    print(f"{len(headings(readme))} headings, {len(unmapped)} unmapped; {not_found} lines not found")
    return 1 if unmapped or lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
