"""Writing an export: each split as JSON lines and as Parquet, provenance beside the rows, and a card.

OUT/README.md                        the dataset card; its YAML header lets `datasets.load_dataset(OUT)`
                                     find the JSON-lines splits
OUT/jsonl/<split>-<digest>.jsonl     rows in the chosen format's published layout, nothing else; when AI
                                     feedback is selected, the TRL formats add a ``source`` column
                                     (human, user-feedback, ai-feedback): the others have no place for it
OUT/parquet/<split>-<digest>.parquet the same rows: `datasets.load_dataset(OUT / "parquet")`
OUT/meta/<split>.jsonl               one line per row, same order: prompt id, task key, request id,
                                     source (and its group), annotator, candidate ids, guard flags,
                                     models, margin
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from feedback.preferences.ai_feedback import group_of
from feedback.preferences.card import dataset_card
from feedback.preferences.export import ExportOptions, Gathered, PreferencePair, split_of
from feedback.preferences.formats import MARGIN_FORMATS, row

SPLITS = ("train", "test")


def _meta(pair: PreferencePair) -> dict[str, Any]:
    return {
        "prompt_id": pair.prompt_id,
        "task_key": pair.task_key,
        "request_id": pair.request_id,
        "source": pair.comparison.source,
        "feedback_source": group_of(pair.comparison.source),
        "annotator": pair.comparison.annotator,
        "margin": pair.comparison.margin,
        "chosen_id": pair.chosen.id,
        "rejected_id": pair.rejected.id,
        "chosen_model": pair.chosen.model,
        "rejected_model": pair.rejected.model,
        "chosen_flags": pair.chosen.flags,
        "rejected_flags": pair.rejected.flags,
        "policy": pair.policy,
        "project": pair.project,
    }


def source_column(options: ExportOptions) -> bool:
    """Whether rows name their source: when AI feedback may be among them, in the formats with room."""
    return "ai-feedback" in options.selected and options.format in MARGIN_FORMATS


def write_dataset(
    gathered: Gathered, options: ExportOptions, out: Path, labelstudio_url: str | None, advance: Any = None
) -> dict[str, int]:
    """Returns the rows written per split."""
    with_margin = options.margin and options.format in MARGIN_FORMATS
    with_source = source_column(options)
    rows: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    metas: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for pair in gathered.pairs:
        split = split_of(pair.prompt_id, options.test_fraction, options.split_seed)
        margin = pair.comparison.margin if with_margin else None
        item = row(options.format, pair.request, pair.chosen.text, pair.rejected.text, margin)
        if with_source:
            item["source"] = group_of(pair.comparison.source)
        rows[split].append(item)
        metas[split].append(_meta(pair))
        if advance is not None:
            advance(1)
    written, stems = write_splits(out, rows, metas)
    policies = Counter(p.policy or "(none recorded)" for p in gathered.pairs)
    card = dataset_card(gathered, options, written, stems, labelstudio_url, policies)
    (out / "README.md").write_text(card)
    return written


def write_splits(
    out: Path, rows: dict[str, list[dict[str, Any]]], metas: dict[str, list[dict[str, Any]]]
) -> tuple[dict[str, int], dict[str, str]]:
    """Each split's rows as JSON lines and Parquet, and its provenance in ``meta/``; an earlier export's
    files in those folders are removed. Returns the rows written per split and each split's file stem."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for folder in ("jsonl", "parquet", "meta"):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for stale in (out / folder).glob("*"):
            stale.unlink()  # an earlier export's splits must not linger beside this one's
    written = {split: len(items) for split, items in rows.items() if items}
    stems = {}
    for split in written:
        data = _jsonl(rows[split])
        # The content's digest is in the name: `datasets` caches a folder's data by its file names, and
        # would go on serving an earlier export written to the same folder.
        stems[split] = f"{split}-{hashlib.sha256(data).hexdigest()[:10]}"
        (out / "jsonl" / f"{stems[split]}.jsonl").write_bytes(data)
        pq.write_table(pa.Table.from_pylist(rows[split]), out / "parquet" / f"{stems[split]}.parquet")
        (out / "meta" / f"{split}.jsonl").write_bytes(_jsonl(metas[split]))
    return written, stems


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in rows).encode()
