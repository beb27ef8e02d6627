"""Ranking results as Label Studio's browser writes them for the bucket layout, for tests that annotate
through the API."""

from __future__ import annotations

from typing import Any

from feedback.labelstudio.config import DEFAULT_BUCKETS, bucket_name


def bucket_ranking(order: list[str]) -> list[dict[str, Any]]:
    """Each answer (its letter) in a bucket of its own, best first; ``_`` (the unplaced) empty."""
    if len(order) > len(DEFAULT_BUCKETS):
        raise ValueError(f"at most {len(DEFAULT_BUCKETS)} answers, one a bucket")
    names = [bucket_name(title) for title in DEFAULT_BUCKETS]
    buckets: dict[str, list[str]] = {"_": [], **{name: [] for name in names}}
    for name, letter in zip(names, order, strict=False):
        buckets[name] = [letter]
    return [{"from_name": "rank", "to_name": "completions", "type": "ranker", "value": {"ranker": buckets}}]


def letters_by_text(data: dict[str, Any]) -> dict[str, str]:
    """A bucket-layout task's answers: text → the letter annotators see it under."""
    return {item["body"]: item["id"] for item in data["completions"]}
