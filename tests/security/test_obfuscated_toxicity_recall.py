"""Threat: obfuscation hides toxic text from the real toxicity guard (the embedded classic tier), on
input and on output, while a careless fix would flag clean text in other scripts, with accents, spaced
acronyms or digits in names.

Measured on tests/data/obfuscation_labelled.jsonl (made by tests/support/obfuscation_set.py) through
the gateway: an input counts as flagged when it gets a 400, an answer when its choice ends with
``content_filter``. The baseline is the same guard reading the texts as sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from guards.normalise import TextView
from guards.policy import Policy, PolicyBook, Rule
from guards.registry import GuardResources
from guards.runner import RunnerPool
from guards.toxicity import ToxicityConfig, ToxicityGuard
from tests.support.policy_harness import chat, guarded_client

DATA = Path(__file__).resolve().parents[1] / "data" / "obfuscation_labelled.jsonl"
BOOK = PolicyBook(
    default=Policy(input=[Rule(guard="toxicity")]),
    models={
        "echo": Policy(output=[Rule(guard="toxicity")]),
        "fake-no-n": Policy(input=[Rule(guard="as_sent")]),
    },
)


class ClassicToxicity(ToxicityGuard):
    """The embedded toxicity guard, whose runners close with the gateway (they live on its loop)."""

    async def close(self) -> None:
        await self._resources.runners.close()


class AsSent(ClassicToxicity):
    """The same guard reading text as sent: the baseline."""

    view: ClassVar[TextView] = TextView.RAW


# Obfuscations the normaliser does not undo (see guards/normalise.py): measured, not required.
UNHANDLED = frozenset({"asterisk_mask", "mixed_separators", "right_to_left_override"})


def _rates(
    rows: list[dict[str, Any]], flagged: list[bool], skip: frozenset[str] = frozenset()
) -> tuple[float, float]:
    """Recall on obfuscated toxic rows (but the kinds in ``skip``), false-positive rate on clean rows."""
    hits = [f for r, f in zip(rows, flagged, strict=True) if r["toxic"] and r["kind"] not in {"plain", *skip}]
    false = [f for r, f in zip(rows, flagged, strict=True) if not r["toxic"]]
    return sum(hits) / len(hits), sum(false) / len(false)


def _by_kind(rows: list[dict[str, Any]], flagged: list[bool]) -> dict[str, str]:
    kinds: dict[str, list[bool]] = {}
    for row, hit in zip(rows, flagged, strict=True):
        if row["toxic"]:
            kinds.setdefault(row["kind"], []).append(hit)
    return {kind: f"{sum(hits)}/{len(hits)}" for kind, hits in kinds.items()}


async def test_obfuscated_toxic_text_is_caught_on_input_and_output_without_flagging_clean_text(
    tmp_path: Path,
) -> None:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    texts = [r["text"] for r in rows]
    resources = GuardResources(RunnerPool(), None, tmp_path)
    guards = {"toxicity": ClassicToxicity("toxicity", ToxicityConfig(), resources)}
    guards["as_sent"] = AsSent("as_sent", ToxicityConfig(), resources)
    async with guarded_client(BOOK, guards) as client:
        sent = [
            (await client.post("/v1/chat/completions", json=chat(t, model="fake-no-n"))).status_code
            for t in texts
        ]
        inputs = [(await client.post("/v1/chat/completions", json=chat(t))).status_code for t in texts]
        answers = [
            (await client.post("/v1/chat/completions", json=chat(t, model="echo"))).json() for t in texts
        ]
    assert set(inputs) | set(sent) <= {200, 400}
    as_sent = [status == 400 for status in sent]
    on_input = [status == 400 for status in inputs]
    on_output = [a["choices"][0]["finish_reason"] == "content_filter" for a in answers]

    baseline = _rates(rows, as_sent)
    measured = {"input": _rates(rows, on_input), "output": _rates(rows, on_output)}
    false = [r["text"] for r, f in zip(rows, on_input, strict=True) if f and not r["toxic"]]
    print(
        f"\nas sent: recall {baseline[0]:.3f}, false positives {baseline[1]:.3f}; {_by_kind(rows, as_sent)}"
    )
    for stage, (recall, fpr) in measured.items():
        print(f"{stage}: recall {recall:.3f}, false positives {fpr:.3f}")
    print(f"input by kind: {_by_kind(rows, on_input)}; false positives: {false}")

    assert baseline[0] < 0.5  # the set is hard for the guard reading text as sent
    for flagged in (on_input, on_output):
        handled, fpr = _rates(rows, flagged, skip=UNHANDLED)
        assert handled >= 0.97
        assert fpr <= baseline[1] + 0.02  # normalising flags no more clean text than reading it as sent
    assert on_input == on_output  # both stages read the same view
