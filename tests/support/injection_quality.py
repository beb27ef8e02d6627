"""The prompt-injection guard on the labelled set (tests/data/injection_labelled.jsonl): per group, how many
texts it flags. Each text is judged as the gateway gives it: with its kind (user, tool, source, or a system
message holding a ``<document>`` block), so a group's figure is the whole guard's, windows and all."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import msgspec

from guards.injection import InjectionGuard

DATA = Path(__file__).resolve().parents[1] / "data" / "injection_labelled.jsonl"


class Labelled(msgspec.Struct, frozen=True):
    group: str  # direct, indirect_tool, indirect_source, indirect_document, benign_technical, ...
    kind: str  # the text's kind as the gateway gives it (``JudgeContext.kinds``)
    label: int  # 1: an injection
    text: str


class GroupRate(msgspec.Struct):
    group: str
    label: int
    total: int
    flagged: int
    missed_or_false: list[str]  # injections missed, or benign texts flagged

    @property
    def rate(self) -> float:
        """Detection rate for injections, false-positive rate for benign texts."""
        return self.flagged / self.total


def labelled_set() -> list[Labelled]:
    return [msgspec.convert(json.loads(line), Labelled) for line in DATA.read_text().splitlines() if line]


async def rates(guard: InjectionGuard, threshold: float) -> dict[str, GroupRate]:
    """Each text judged on its own (one text, one kind), in one batch per kind."""
    rows = labelled_set()
    by_group: dict[str, GroupRate] = {}
    by_kind: dict[str, list[Labelled]] = defaultdict(list)
    for row in rows:
        by_kind[row.kind].append(row)
    for kind, members in by_kind.items():
        verdicts = []
        for row in members:  # one text per call, so no join of a kind's texts mixes two rows
            verdicts += await guard.judge(
                [row.text], {"injection": threshold, "jailbreak": threshold}, _context(kind)
            )
        for row, verdict in zip(members, verdicts, strict=True):
            rate = by_group.setdefault(row.group, GroupRate(row.group, row.label, 0, 0, []))
            rate.total += 1
            flagged = not verdict.allowed
            rate.flagged += flagged
            if flagged != bool(row.label):
                rate.missed_or_false.append(row.text)
    return by_group


def _context(kind: str) -> object:
    from guards.verdict import JudgeContext

    return JudgeContext(kinds=[kind])
