"""One prompt through Constitutional AI, and a whole prompt set with bounded concurrency and resumption.

For a prompt: the model answers; ``principles_per_answer`` principles are drawn from the pool (seeded by
``seed`` and the prompt's key, so a rerun draws the same ones whatever the order prompts run in); the
critic critiques the answer against them, then revises it (``feedback.constitution``'s messages). With
``ai_ranking`` the critic is then shown the answer and the revision, in an order drawn the same way, and
asked which better follows one of the drawn principles.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from feedback.constitute.critic import ChatClient, PromptFailed, Ranking, ranking_messages, read_ranking
from feedback.constitute.prompts import Prompt
from feedback.constitute.state import Result, RunState
from feedback.constitution import (
    Constitution,
    Finding,
    Principle,
    critique_messages,
    revision_messages,
    revision_text,
)
from feedback.preferences.formats import dataset_prompt, messages_of

log = logging.getLogger("hhh.feedback")

# Offline there is no guard verdict to show the critic: it judges by the principles alone, and is told so.
OFFLINE_FINDING = Finding(
    guard="review", categories=["offline"], evidence=["no automatic check ran: judge by the principles alone"]
)


class ConstituteOptions(msgspec.Struct, kw_only=True, frozen=True):
    model: str
    critic_model: str
    principles_per_answer: int = 2
    principle_pool: tuple[str, ...] = ()  # principle ids to draw from; empty: the whole constitution
    seed: int = 0
    concurrency: int = 4
    max_tokens: int = 256
    temperature: float = 0.7  # the answer's; the critic's calls are greedy (temperature 0)
    ai_ranking: bool = False

    def __post_init__(self) -> None:
        if self.principles_per_answer < 1:
            raise ValueError("--principles-per-answer: at least 1")
        if self.concurrency < 1:
            raise ValueError("--concurrency: at least 1")
        if self.max_tokens < 1:
            raise ValueError("--max-tokens: at least 1")

    def identity(self, constitution: Constitution) -> dict[str, Any]:
        """What decides the results: a rerun into the same folder must have the same."""
        digest = hashlib.sha256(msgspec.json.encode(constitution)).hexdigest()[:16]
        return {
            "model": self.model, "critic_model": self.critic_model, "constitution": digest,
            "principles_per_answer": self.principles_per_answer, "principle_pool": list(self.principle_pool),
            "seed": self.seed, "ai_ranking": self.ai_ranking, "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }  # fmt: skip


def principle_pool(constitution: Constitution, ids: Sequence[str]) -> list[Principle]:
    """The principles to draw from; an id the constitution lacks is an error naming it."""
    if not ids:
        return list(constitution.principles)
    known = {p.id: p for p in constitution.principles}
    if unknown := [i for i in ids if i not in known]:
        raise ValueError(
            f"--principle: not in the constitution: {', '.join(unknown)} (it has {', '.join(known)})"
        )
    return [p for p in constitution.principles if p.id in ids]


def draw(pool: Sequence[Principle], count: int, seed: int, key: str) -> tuple[list[Principle], random.Random]:
    """``count`` principles for one prompt, in the constitution's order, and the prompt's own generator
    (for the ranking's order): the same for the same seed and key, whatever else runs."""
    rng = random.Random(f"{seed}:{key}")
    chosen = set(rng.sample(range(len(pool)), min(count, len(pool))))
    return [p for i, p in enumerate(pool) if i in chosen], rng


async def critique_and_revise(
    client: ChatClient,
    critic: str,
    max_tokens: int,
    prompt: str,
    answer: str,
    principles: Sequence[Principle],
    findings: Sequence[Finding] = (OFFLINE_FINDING,),
) -> tuple[str, str]:
    """The critic's critique of ``answer`` against ``principles``, then its revision (greedy calls)."""
    greedy = {"model": critic, "max_tokens": max_tokens, "temperature": 0.0}
    critique = await client.text(
        "critique", {**greedy, "messages": critique_messages(prompt, answer, principles, findings)}
    )
    reply = await client.text(
        "revision", {**greedy, "messages": revision_messages(prompt, answer, critique, principles)}
    )
    revision = revision_text(reply)
    if not revision:
        raise PromptFailed("revision: empty")
    return critique, revision


async def constitute_one(
    client: ChatClient, options: ConstituteOptions, pool: Sequence[Principle], prompt: Prompt
) -> Result:
    messages = messages_of(prompt.request)
    text = dataset_prompt(messages)
    principles, rng = draw(pool, options.principles_per_answer, options.seed, prompt.key)
    answer = await client.text("answer", {
        "model": options.model, "messages": messages, "max_tokens": options.max_tokens,
        "temperature": options.temperature, "seed": options.seed,
    })  # fmt: skip
    critique, revision = await critique_and_revise(
        client, options.critic_model, options.max_tokens, text, answer, principles
    )
    ranking = None
    if options.ai_ranking:
        ranking = await rank(
            client, options.critic_model, text, answer, revision, rng.choice(principles), rng
        )
    return Result(
        key=prompt.key, request_id=prompt.request_id, tenant=prompt.tenant, request=prompt.request,
        model=options.model, critic_model=options.critic_model, answer=answer, critique=critique,
        revision=revision, principles=[p.id for p in principles], ranking=ranking, created=time.time(),
    )  # fmt: skip


async def rank(
    client: ChatClient, critic: str, prompt: str, answer: str, revision: str, principle: Principle, rng: Any
) -> Ranking:
    """RL-CAI's labelling step: the critic picks the answer that better follows ``principle``; the order
    the two are shown in is drawn, so a critic that always says "A" is not always right."""
    revision_is = "A" if rng.random() < 0.5 else "B"
    first, second = (revision, answer) if revision_is == "A" else (answer, revision)
    body = {
        "model": critic, "messages": ranking_messages(prompt, first, second, principle), "max_tokens": 1,
        "temperature": 0.0, "logprobs": True, "top_logprobs": 5,
    }  # fmt: skip
    try:
        choice = await client.complete("ranking", body)
    except PromptFailed as exc:
        if "HTTP 400" not in str(exc):
            raise
        # A server that does not do log probabilities may refuse them: ask for the letter alone.
        body = {k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")}
        choice = await client.complete("ranking", body)
    return read_ranking(choice, principle.id, revision_is)


class RunSummary(msgspec.Struct, kw_only=True):
    prompts: int = 0
    skipped: int = 0  # done by an earlier run into the same folder
    done: int = 0
    failed: int = 0
    failures: dict[str, int] = {}  # by reason


async def constitute_all(
    client: ChatClient,
    options: ConstituteOptions,
    pool: Sequence[Principle],
    prompts: Sequence[Prompt],
    state: RunState,
    advance: Callable[[int], Any] | None = None,
) -> RunSummary:
    """Every prompt not done yet, at most ``concurrency`` at once; each result is in the state file the
    moment it is done. A failed prompt is logged and counted, and left for the next run."""
    done = state.load()
    todo = [p for p in prompts if p.key not in done]
    summary = RunSummary(prompts=len(prompts), skipped=len(prompts) - len(todo))
    failures: Counter[str] = Counter()
    gate = asyncio.Semaphore(options.concurrency)

    async def one(prompt: Prompt) -> None:
        async with gate:
            try:
                result = await constitute_one(client, options, pool, prompt)
            except PromptFailed as exc:
                log.warning("prompt %s failed: %s", prompt.key, exc)
                failures[str(exc)] += 1
                state.failed(prompt.key, str(exc))
            else:
                state.append(result)
                summary.done += 1
            if advance is not None:
                advance(1)

    await asyncio.gather(*(one(prompt) for prompt in todo))
    summary.failed = sum(failures.values())
    summary.failures = dict(failures)
    return summary
