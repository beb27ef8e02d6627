"""Threat: malformed input that crashes a handler (a 500, a traceback in the log) instead of a 400.

Deeply nested JSON exhausted the decoder's recursion (chat and the Label Studio webhook), a content part
whose ``text`` is a number broke the chat route, a webhook whose ``task.data`` is no object broke the
annotation reader, and a ``sources`` field of the wrong type named a garbled ``param``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from feedback.labelstudio.annotations import InvalidAnnotation, read_annotation
from feedback.labelstudio.config import CANDIDATES
from feedback.labelstudio.receiver import ranking_checker
from feedback.labelstudio.settings import SECRET_HEADER, LabelStudioSettings
from feedback.labelstudio.tasks import TASK_KEY
from gateway.app import create_app
from gateway.relay.embedded_llm import free_port
from gateway.settings import FeedbackSettings, RedisSettings, Settings, UpstreamSettings
from guards.policy import Policy, PolicyBook
from tests.support.fake_upstream import FakeUpstream

SECRET = "webhook-secret-for-tests"
WEBHOOK = "/v1/feedback/labelstudio"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _chat_with(extra: str) -> bytes:
    return (
        '{"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "metadata": ' + extra + "}"
    ).encode()


def _assert_400(response: Any, *, param: str | None = None, says: str = "") -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert says in error["message"]
    return error


@pytest.mark.parametrize("depth", [100, 999, 20_000])
async def test_deeply_nested_json_in_a_chat_request_is_a_400_naming_the_limit(
    client: AsyncTestClient,
    fake_upstream: FakeUpstream,
    depth: int,  # type: ignore[type-arg]
) -> None:
    response = await client.post(
        "/v1/chat/completions",
        content=_chat_with(_nested(depth)),
        headers={"content-type": "application/json"},
    )
    _assert_400(response, says="limits.max_json_depth")
    assert fake_upstream.bodies == []


async def test_a_content_part_whose_text_is_a_number_is_a_400(
    client: AsyncTestClient,
    fake_upstream: FakeUpstream,  # type: ignore[type-arg]
) -> None:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}
    response = await client.post("/v1/chat/completions", json=body)
    _assert_400(response, param="messages[0].content[0].text", says="got `int`")
    assert fake_upstream.bodies == []


@pytest.mark.parametrize("sources", ["not a list", 5, {"text": "an object"}])
async def test_a_sources_field_of_the_wrong_type_names_the_param(
    client: AsyncTestClient,
    sources: Any,  # type: ignore[type-arg]
) -> None:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "sources": sources}
    error = _assert_400(await client.post("/v1/chat/completions", json=body), param="sources")
    assert error["message"].startswith("Invalid value for 'sources': Expected `array`, got `")


@pytest.fixture
async def webhook(tmp_path: Path) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    """The webhook on, its Redis down: every case here must be refused before the store is asked."""
    settings = Settings(
        data_dir=str(tmp_path),
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
        redis=RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0"),
        feedback=FeedbackSettings(labelstudio=LabelStudioSettings(webhook_secret=SECRET)),
        guards={},
        policies=PolicyBook(default=Policy()),
    )
    app = create_app(settings, upstream_transport=FakeUpstream().transport(), guards={})
    async with AsyncTestClient(app) as test_client:
        test_client.headers[SECRET_HEADER] = SECRET
        yield test_client


@pytest.mark.parametrize("depth", [100, 999, 20_000])
async def test_deeply_nested_json_in_a_webhook_call_is_a_400(
    webhook: AsyncTestClient,
    depth: int,  # type: ignore[type-arg]
) -> None:
    body = ('{"action": "ANNOTATION_CREATED", "annotation": ' + _nested(depth) + "}").encode()
    response = await webhook.post(WEBHOOK, content=body, headers={"content-type": "application/json"})
    _assert_400(response, says="limits.max_json_depth")


async def test_deeply_nested_json_in_a_big_webhook_call_is_a_400(webhook: AsyncTestClient) -> None:  # type: ignore[type-arg]
    """A body this big is scanned on a worker thread: the answer is the same."""
    pad = "x" * 300_000
    body = (
        '{"action": "ANNOTATION_CREATED", "pad": "' + pad + '", "annotation": ' + _nested(999) + "}"
    ).encode()
    response = await webhook.post(WEBHOOK, content=body, headers={"content-type": "application/json"})
    _assert_400(response, says="limits.max_json_depth")


@pytest.mark.parametrize("data", [["a list"], "a string", 5])
async def test_a_webhook_whose_task_data_is_not_an_object_is_a_400(
    webhook: AsyncTestClient,
    data: Any,  # type: ignore[type-arg]
) -> None:
    payload = {
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": 1, "result": []},
        "task": {"id": 1, "data": data},
    }
    _assert_400(await webhook.post(WEBHOOK, json=payload), says="task.data")


@pytest.mark.parametrize("candidates", [5, "a string", {"id": "a"}])
def test_a_task_whose_candidates_are_not_a_list_is_an_invalid_annotation_not_a_crash(candidates: Any) -> None:
    """The webhook and the reconciling poll both read tasks this way; an invalid one is rejected (kept
    for operators), never a crash."""
    annotation = {"id": 1, "result": []}
    task = {"id": 1, "data": {TASK_KEY: "k", CANDIDATES: candidates}}
    with pytest.raises(InvalidAnnotation, match="must be a list"):
        read_annotation(annotation, task, ranking_checker(), project=1)
