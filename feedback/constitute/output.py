"""What a constitute run leaves, rebuilt from the whole state file after every run (so a resumed run's
datasets hold every prompt once):

OUT/README.md                 the run's card: counts, model, critic, constitution, principles used
OUT/sft/                      SFT (SL-CAI): TRL's conversational format, ``{"messages": [..., {"role":
                              "assistant", "content": <revision>}]}``; ``datasets.load_dataset(OUT/sft)``
OUT/preference/<format>/      preference pairs (RLAIF) in each export format, written by the export's
                              writer (jsonl/, parquet/, meta/, README.md): chosen = the revision, rejected =
                              the answer; with an AI ranking, the critic's choice, and its probability as
                              ``margin`` (TRL formats) when the server gave every one; TRL rows carry
                              ``source: ai-feedback``

Each result can also become a ``RevisionEvent`` (origin "constitute") in the event stream, so that
``hhh feedback export --sources ai-feedback`` includes it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from feedback.constitute.state import Result
from feedback.delivery import StreamWriter, new_batch_id
from feedback.events import RevisionEvent, encode_event, event_kind
from feedback.preferences.card import data_files_header
from feedback.preferences.export import prompt_id, split_of
from feedback.preferences.formats import MARGIN_FORMATS, messages_of, row
from feedback.preferences.writer import write_splits

SPLITS = ("train", "test")


class Written(msgspec.Struct, kw_only=True):
    sft: dict[str, int]  # rows per split
    pairs: dict[str, int]  # pairs per split (the same in every format)
    dropped_identical: int
    margin: bool
    stems: dict[str, dict[str, str]]  # folder (relative to OUT) → split → file stem


def place_cards(out: Path, written: Written, card: str) -> None:
    """The card at the top, and in each dataset folder behind the header ``datasets`` reads."""
    (out / "README.md").write_text(card)
    for folder, stems in written.stems.items():
        tags = (
            ("sft", "constitutional-ai") if folder == "sft" else ("preference", "rlaif", "constitutional-ai")
        )
        (out / folder / "README.md").write_text(data_files_header(stems, tags) + card)


def _sides(result: Result) -> tuple[str, str, str]:
    """(chosen, rejected, which is chosen): the revision, unless the critic's ranking preferred the answer."""
    if result.ranking is not None and result.ranking.choice == "original":
        return result.answer, result.revision, "original"
    return result.revision, result.answer, "revision"


def _meta(result: Result, chosen_is: str) -> dict[str, Any]:
    return {
        "key": result.key, "request_id": result.request_id, "prompt_id": prompt_id(result.request),
        "model": result.model, "critic_model": result.critic_model, "principles": result.principles,
        "chosen_is": chosen_is, "source": "ai-feedback",
        "ranking": None if result.ranking is None else msgspec.to_builtins(result.ranking),
    }  # fmt: skip


def write_outputs(
    out: Path, results: list[Result], formats: tuple[str, ...], test_fraction: float, split_seed: str
) -> Written:
    ranked = [r for r in results if r.ranking is not None]
    margin = bool(ranked) and all(r.ranking is not None and r.ranking.probability is not None for r in ranked)
    sft: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    sft_meta: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    pairs: dict[str, list[tuple[Result, str, str, str]]] = {split: [] for split in SPLITS}
    dropped = 0
    for result in results:
        split = split_of(prompt_id(result.request), test_fraction, split_seed)
        sft[split].append({"messages": [*messages_of(result.request),
                                        {"role": "assistant", "content": result.revision}]})  # fmt: skip
        sft_meta[split].append(_meta(result, "revision"))
        if result.answer.strip() == result.revision.strip():
            dropped += 1  # two answers alike teach a reward model nothing
            continue
        pairs[split].append((result, *_sides(result)))
    sft_written, stems = write_splits(out / "sft", sft, sft_meta)
    all_stems = {"sft": stems}
    pairs_written: dict[str, int] = {}
    for fmt in formats:
        rows = {split: [_pair_row(fmt, item, margin) for item in items] for split, items in pairs.items()}
        metas = {split: [_meta(item[0], item[3]) for item in items] for split, items in pairs.items()}
        pairs_written, all_stems[f"preference/{fmt}"] = write_splits(out / "preference" / fmt, rows, metas)
    return Written(
        sft=sft_written, pairs=pairs_written, dropped_identical=dropped, margin=margin, stems=all_stems
    )


def _pair_row(fmt: str, item: tuple[Result, str, str, str], margin: bool) -> dict[str, Any]:
    result, chosen, rejected, _ = item
    probability = result.ranking.probability if margin and result.ranking is not None else None
    made = row(fmt, result.request, chosen, rejected, probability)
    if fmt in MARGIN_FORMATS:
        made["source"] = "ai-feedback"
    return made


def revision_events(results: list[Result], tenant: str, run: str) -> tuple[list[RevisionEvent], int]:
    """Each result as a RevisionEvent (origin "constitute"), with an id stable for this run's options, so
    recording again files nothing twice. A result whose AI ranking preferred the answer is not one (a
    RevisionEvent's chosen is its revision): those are counted, and stay in this run's datasets."""
    events = []
    for result in results:
        if result.ranking is not None and result.ranking.choice == "original":
            continue
        digest = hashlib.sha256(f"{run}:{result.key}".encode()).hexdigest()[:24]
        events.append(
            RevisionEvent(
                id=f"cai-{digest}", created=result.created, tenant=result.tenant or tenant,
                origin="constitute", request_id=result.request_id, model=result.model,
                critic_model=result.critic_model, request=result.request, rejected=result.answer,
                chosen=result.revision, principles=result.principles, critiques=[result.critique],
            )
        )  # fmt: skip
    return events, len(results) - len(events)


async def record(
    client: Any, stream: str, max_length: int, events: list[RevisionEvent], batch: int = 200
) -> int:
    """Into the event stream, as the gateway records (the collector files them by kind)."""
    writer = StreamWriter(client, stream, max_length)
    for start in range(0, len(events), batch):
        items = [e.id.encode() + b" " + event_kind(e).encode() + b" " + encode_event(e)
                 for e in events[start : start + batch]]  # fmt: skip
        await writer.first(new_batch_id(), items)
    return len(events)


def principle_counts(results: list[Result]) -> Counter[str]:
    return Counter(p for r in results for p in r.principles)
