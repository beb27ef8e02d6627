"""Threat: one client's huge request starves every other client of the shared guard models.

The runner ran a request's texts as one job, which kept running after that request timed out: 2,000
messages, 10,000 messages or one 999,000-character message made everyone else's requests fail with 503
``guard_unavailable`` for 8 s, 34 s and about 80 s. Now a call is cut into batches taken round robin
from every caller, a caller that gave up is dropped, and a request's text for the guards has a budget,
checked before any model runs. Fairness is asserted by order of completion, never by a clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.limits import LimitsSettings
from gateway.settings import (
    ApiKey,
    AuthSettings,
    ConfigError,
    FeedbackSettings,
    ServerSettings,
    Settings,
    UpstreamSettings,
    settings_from_mapping,
)
from guards.policy import GuardSpec, Policy, PolicyBook, Rule
from guards.runner import BatchingRunner
from tests.support.fake_guards import WordGuard
from tests.support.fake_upstream import FakeUpstream
from tests.support.request_limits import GatedModel, RunnerGuard, served
from tests.unit.conftest import GATEWAY_KEY

HUGE = 800  # texts: a hundred batches of eight


def _chat(*texts: str) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text} for text in texts]}


async def test_a_small_call_finishes_before_a_huge_one_already_holding_the_model() -> None:
    model = GatedModel()
    runner: BatchingRunner[str, float] = BatchingRunner("fair", model, max_batch=8, max_wait_ms=0)
    await runner.start()
    finished: list[str] = []

    async def ask(name: str, count: int) -> None:
        await runner.run([f"{name}-{i}" for i in range(count)])
        finished.append(name)

    try:
        huge = asyncio.create_task(ask("huge", HUGE))
        await model.wait_started()  # the huge call holds the model
        small = asyncio.create_task(ask("small", 2))
        await asyncio.sleep(0)  # the small call is queued
        model.release()
        await asyncio.gather(huge, small)
    finally:
        await runner.close()
    assert finished == ["small", "huge"]
    assert max(len(batch) for batch in model.batches) <= 8


async def test_the_unstarted_work_of_a_call_that_timed_out_never_runs() -> None:
    model = GatedModel()
    runner: BatchingRunner[str, float] = BatchingRunner("drop", model, max_batch=8, max_wait_ms=0)
    await runner.start()
    try:
        huge = asyncio.create_task(runner.run([f"huge-{i}" for i in range(HUGE)]))
        await model.wait_started()
        huge.cancel()  # what a guard's time-out does to the call (asyncio.wait_for)
        model.release()
        assert await runner.run(["after"]) == [0.0]  # the model is free again at once
    finally:
        await runner.close()
    assert model.texts_run("huge-") <= 8  # only the batch that had already started


def _gated_settings(**limits: int) -> Settings:
    """One input guard, with time to spare (so only fairness decides the order); 4 MiB bodies."""
    return Settings(
        guards={"toxicity": GuardSpec(type="toxicity")},
        policies=PolicyBook(default=Policy(input=[Rule(guard="toxicity", timeout_ms=60_000)])),
        limits=LimitsSettings(**limits),
        feedback=FeedbackSettings(record=False),
        server=ServerSettings(max_body_bytes=4 * 1024 * 1024),
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
        auth=AuthSettings(keys=[ApiKey(tenant="acme", sha256=hash_key(GATEWAY_KEY))]),
    )


@asynccontextmanager
async def _client(
    settings: Settings, upstream: FakeUpstream, guards: dict[str, Any]
) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    app = create_app(settings, upstream_transport=upstream.transport(), guards=guards)
    async with AsyncTestClient(app) as client:
        client.headers["authorization"] = f"Bearer {GATEWAY_KEY}"
        yield client


async def test_a_small_client_is_served_while_a_huge_request_holds_the_guard() -> None:
    model = GatedModel()
    guard = RunnerGuard(model)
    finished: list[str] = []
    app = create_app(
        _gated_settings(), upstream_transport=FakeUpstream().transport(), guards={"toxicity": guard}
    )
    try:
        async with served(app, {"authorization": f"Bearer {GATEWAY_KEY}"}) as client:

            async def ask(name: str, body: dict[str, Any]) -> int:
                response = await client.post("/v1/chat/completions", json=body)
                finished.append(name)
                return int(response.status_code)

            huge = asyncio.create_task(ask("huge", _chat(*(f"huge-{i}" for i in range(HUGE)))))
            await model.wait_started()  # the huge request holds the guard's model
            small = asyncio.create_task(ask("small", _chat("small question")))
            await guard.until_judged("small question")  # queued behind it
            model.release()
            assert await asyncio.gather(huge, small) == [200, 200]
    finally:
        model.release()  # never leave the model's thread waiting
    assert finished == ["small", "huge"]


@pytest.mark.parametrize(
    ("limits", "texts", "limit"),
    [
        ({}, ["x"] * 2_000, "limits.max_input_texts"),  # the report's 2,000 messages, default limits
        ({}, ["a " * 500_001], "limits.max_input_chars"),  # over 1,000,000 characters: spaCy refuses it
        ({"max_input_texts": 10}, ["x"] * 11, "limits.max_input_texts"),
        ({"max_input_chars": 1_000}, ["x" * 600, "y" * 401], "limits.max_input_chars"),
    ],
    ids=["2000-messages", "1M-characters", "texts-configured", "characters-configured"],
)
async def test_a_request_over_its_text_budget_is_refused_before_any_guard_runs(
    limits: dict[str, int], texts: list[str], limit: str
) -> None:
    guard = WordGuard()
    upstream = FakeUpstream()
    async with _client(_gated_settings(**limits), upstream, {"toxicity": guard}) as client:
        response = await client.post("/v1/chat/completions", json=_chat(*texts))
    assert response.status_code == 413
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "input_too_large",
        "messages",
    )
    assert limit in error["message"]
    assert guard.calls == []
    assert upstream.bodies == []


def test_a_text_budget_beyond_what_the_pii_model_can_parse_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^limits\.max_input_chars: must be at most 1,000,000"):
        settings_from_mapping({"limits": {"max_input_chars": 2_000_000}}, environ={})
