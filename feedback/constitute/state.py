"""A constitute run's state in its output folder, which makes it resumable:

OUT/run.json       the options that decide the results (model, critic, constitution, sampling, ranking);
                   a rerun with other ones into the same folder is refused, naming the option
OUT/state.jsonl    one line per prompt done, keyed by the prompt's key; a rerun skips those keys
OUT/failed.jsonl   this run's failed prompts with the reason (they are not in the state: a rerun retries)

A line is appended whole, with one write, as soon as its prompt is done, so a run killed at any moment
loses at most the prompts in flight. A torn last line (killed mid-write) is cut off on the next start.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import msgspec

from feedback.constitute.critic import Ranking

log = logging.getLogger("hhh.feedback")

# run.json key → the option that sets it, for the error a mismatch gives.
IDENTITY_OPTIONS = {
    "model": "--model",
    "critic_model": "--critic-model",
    "constitution": "--constitution",
    "principles_per_answer": "--principles-per-answer",
    "principle_pool": "--principle",
    "seed": "--seed",
    "ai_ranking": "--ai-ranking",
    "max_tokens": "--max-tokens",
    "temperature": "--temperature",
}


class Result(msgspec.Struct, kw_only=True):
    key: str
    request_id: str
    tenant: str | None
    request: dict[str, Any]
    model: str
    critic_model: str
    answer: str
    critique: str
    revision: str
    principles: list[str]
    ranking: Ranking | None = None
    created: float = 0.0


class RunState:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / "state.jsonl"
        self.failed_path = out / "failed.jsonl"

    def claim(self, identity: dict[str, Any]) -> None:
        """Make ``out`` this run's, or check it already is: another run's options are a ``ValueError``
        naming the first option that differs."""
        self.out.mkdir(parents=True, exist_ok=True)
        run = self.out / "run.json"
        if run.exists():
            known = json.loads(run.read_text())
            for key, option in IDENTITY_OPTIONS.items():
                if known.get(key) != identity.get(key):
                    raise ValueError(
                        f"{option}: {identity.get(key)!r}, but --out {self.out} holds a run with "
                        f"{known.get(key)!r}; use another --out, or the same options to resume it"
                    )
        else:
            run.write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
        self.failed_path.write_text("")

    def load(self) -> dict[str, Result]:
        """The prompts already done, by key (a key found twice: the first wins)."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # killed mid-write: the torn line goes
            data = data[: data.rfind(b"\n") + 1]
            self.path.write_bytes(data)
            log.warning("%s: a torn last line was cut off (its prompt will be done again)", self.path)
        done: dict[str, Result] = {}
        for line in data.splitlines():
            result = msgspec.json.decode(line, type=Result)
            done.setdefault(result.key, result)
        return done

    def append(self, result: Result) -> None:
        with self.path.open("ab") as file:
            file.write(msgspec.json.encode(result) + b"\n")

    def failed(self, key: str, reason: str) -> None:
        with self.failed_path.open("a") as file:
            file.write(json.dumps({"key": key, "reason": reason}) + "\n")
