"""The reward models best-of-n policies name (``policies.….best_of_n.reward_model``): checked when the app
is built, loaded once at start-up on the shared batching runners, one scorer per model however many
policies name it."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from gateway.limits import LimitsSettings
from guards.models.reward_model import RewardModelConfig, reward_scorer
from guards.policy import PolicyBook, PolicyError
from guards.runner import RunnerPool

log = logging.getLogger("hhh.best_of_n")

# A model hub id ("org/name", "name"): anything else that is not on disk cannot be loaded.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


class RewardScorer(Protocol):
    """Scores (prompt, answer) pairs: ``guards.models.reward_model.RewardScorer``, or a fake in tests."""

    async def score(self, items: Sequence[tuple[str, str]]) -> list[float]: ...


def reward_model_keys(book: PolicyBook) -> dict[str, str]:
    """Each reward model some policy names → the first key naming it (for errors)."""
    found: dict[str, str] = {}
    for where, policy in book.named_policies():
        if policy.best_of_n is not None:
            found.setdefault(policy.best_of_n.reward_model, f"{where}.best_of_n.reward_model")
    return found


def check_best_of_n(book: PolicyBook, limits: LimitsSettings) -> None:
    """What can be checked before anything loads: a policy's ``n`` fits ``limits.max_n`` (else every
    request under it would be refused), and a reward model given as a path exists."""
    for where, policy in book.named_policies():
        if policy.best_of_n is not None and policy.best_of_n.n > limits.max_n:
            raise PolicyError(
                f"{where}.best_of_n.n: {policy.best_of_n.n} answers a choice is more than limits.max_n "
                f"({limits.max_n}) allows a whole request"
            )
    for model, key in reward_model_keys(book).items():
        if not Path(os.path.expanduser(model)).exists() and not _HUB_ID.fullmatch(model):
            raise PolicyError(f"{key}: no such directory: {model}")


def _config(model: str) -> RewardModelConfig:
    return RewardModelConfig(model=os.path.expanduser(model))


async def load_reward_scorers(book: PolicyBook, runners: RunnerPool) -> dict[str, RewardScorer]:
    """Every reward model some policy names, loaded and warmed up; one that fails to load is a
    configuration error naming the first policy key that names it."""
    scorers: dict[str, RewardScorer] = {}
    for model, key in reward_model_keys(book).items():
        try:
            scorers[model] = await reward_scorer(_config(model), runners)
        except Exception as exc:  # noqa: BLE001 - any loading failure is the configuration's, named
            raise PolicyError(f"{key}: cannot load the reward model {model!r}: {exc}") from None
        log.info("best-of-n reward model %s loaded (%s)", model, key)
    return scorers
