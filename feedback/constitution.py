"""A constitution: written principles a critic model applies to an answer a guard found fault with.

Data, not code: the built-in default (``feedback/data/constitution.yaml``) or an operator's file of the
same shape. Here are its parts, which principles answer which guard findings, and the messages that ask a
critic for a critique and then a revision. No model is called here: the gateway (``revise`` action) and
``hhh feedback constitute`` each send these messages their own way.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

DEFAULT_CONSTITUTION = "constitution.yaml"
MAX_EVIDENCE_ITEMS = 20  # per finding: enough to point at the fault, bounded so a prompt stays small


class Principle(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    applies_to: list[str]  # "guard", "guard:category", or "*"
    critique: str
    revision: str

    def applies(self, finding: Finding) -> bool:
        return any(
            target == "*"
            or target == finding.guard
            or target in (f"{finding.guard}:{category}" for category in finding.categories)
            for target in self.applies_to
        )


class Constitution(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    principles: list[Principle]

    def __post_init__(self) -> None:
        if not self.principles:
            raise ValueError("a constitution needs at least one principle")
        ids = [principle.id for principle in self.principles]
        if len(set(ids)) != len(ids):
            raise ValueError(f"principle ids must be unique: {ids}")

    def matching(self, findings: Sequence[Finding]) -> list[Principle]:
        """The principles that answer any of ``findings``, in the constitution's order."""
        return [p for p in self.principles if any(p.applies(finding) for finding in findings)]


class Finding(msgspec.Struct, frozen=True):
    """What one guard found in an answer: the critic's evidence."""

    guard: str
    categories: list[str]
    scores: dict[str, float] = {}
    evidence: list[str] = []  # e.g. 'unsupported: "X" (best source: doc-2)', 'copy of "Hamlet": "..."'


def load_constitution(path: str | Path | None = None) -> Constitution:
    """The constitution in ``path`` (YAML), or the built-in default. Errors name the file and key."""
    if path is None:
        text = resources.files("feedback.data").joinpath(DEFAULT_CONSTITUTION).read_text(encoding="utf-8")
        where = f"built-in {DEFAULT_CONSTITUTION}"
    else:
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        return msgspec.convert(yaml.safe_load(text), Constitution)
    except (msgspec.ValidationError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"constitution {where}: {exc}") from None


def _findings_text(findings: Sequence[Finding]) -> str:
    lines = []
    for finding in findings:
        scores = ", ".join(f"{k}={v:.2f}" for k, v in sorted(finding.scores.items()))
        lines.append(
            f"- {finding.guard}: {', '.join(finding.categories)}" + (f" ({scores})" if scores else "")
        )
        lines += [f"  - {item}" for item in finding.evidence[:MAX_EVIDENCE_ITEMS]]
    return "\n".join(lines)


_CRITIC = (
    "You review an AI assistant's answer against written principles. Be specific and brief: quote the "
    "parts at fault and say which principle each breaks."
)
_REVISER = (
    "You rewrite an AI assistant's answer so that it follows written principles. Reply with the rewritten "
    "answer only: no preamble, no notes."
)


def _messages(
    system: str, sections: Sequence[tuple[str, str]], ask: str, requests: Sequence[str]
) -> list[dict[str, Any]]:
    """A system message, then the sections ("Title:\ntext") and the numbered requests under ``ask``."""
    numbered = "\n".join(f"{i}. {request}" for i, request in enumerate(requests, 1))
    body = "\n\n".join(f"{title}:\n{text}" for title, text in [*sections, (ask, numbered)])
    return [{"role": "system", "content": system}, {"role": "user", "content": body}]


def critique_messages(
    prompt: str, answer: str, principles: Sequence[Principle], findings: Sequence[Finding]
) -> list[dict[str, Any]]:
    """Chat messages asking a critic to critique ``answer`` to ``prompt`` against ``principles``."""
    sections = [("Request", prompt), ("Answer", answer), ("Automatic checks found", _findings_text(findings))]
    return _messages(_CRITIC, sections, "Critique the answer", [p.critique for p in principles])


def revision_messages(
    prompt: str, answer: str, critique: str, principles: Sequence[Principle], shown: str = ""
) -> list[dict[str, Any]]:
    """Chat messages asking the critic to revise ``answer`` in the light of its ``critique``.

    With ``shown`` (a stream: the start of the answer the reader already has, which cannot be taken
    back), ``answer`` is the rest, and only the rest is rewritten, as a continuation of ``shown``.
    """
    requests = [p.revision for p in principles]
    if not shown:
        sections = [("Request", prompt), ("Answer", answer), ("Critique", critique)]
        return _messages(_REVISER, sections, "Rewrite the answer", requests)
    sections = [
        ("Request", prompt),
        ("Already shown to the reader (keep it: it cannot be changed)", shown),
        ("Rest of the answer", answer),
        ("Critique", critique),
    ]
    requests.append(_CONTINUE)
    return _messages(_REVISER, sections, "Rewrite the rest of the answer", requests)


_CONTINUE = (
    "Write only what comes after the text already shown, so that it reads on from it; do not repeat "
    "the text already shown."
)


_PREAMBLES = ("here is the rewritten answer:", "rewritten answer:", "revised answer:", "revision:")


def revision_text(reply: str) -> str:
    """The revision in a critic's reply, less a preamble a small model may add anyway.

    >>> revision_text("Revised answer: Hello there.")
    'Hello there.'
    """
    text = reply.strip()
    lowered = text.lower()
    for preamble in _PREAMBLES:
        if lowered.startswith(preamble):
            return text[len(preamble) :].strip()
    return text
