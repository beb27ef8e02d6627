"""Every failure is OpenAI's envelope with the right status, and never a stack trace."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}]}


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    return dict(body["error"])


async def test_malformed_json(client: AsyncTestClient[Any]) -> None:
    response = await client.post(
        "/v1/chat/completions",
        content=b'{"model": "fake-model", ',
        headers={"content-type": "application/json"},
    )
    assert "not valid JSON" in _error(response, 400)["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "temperature": "hot"}, "temperature"),
        ({**CHAT, "model": 42}, "model"),
        ({"messages": CHAT["messages"]}, "model"),
        ({"model": "fake-model"}, "messages"),
        ({**CHAT, "messages": []}, "messages"),
        ({**CHAT, "messages": [{"content": "no role"}]}, "messages[0].role"),
        ({**CHAT, "n": 0}, "n"),
        ({**CHAT, "stream": "yes"}, "stream"),
        ({**CHAT, "stream_options": {"include_usage": "please"}}, "stream_options.include_usage"),
    ],
)
async def test_wrong_fields_name_the_param(
    client: AsyncTestClient[Any], body: dict[str, Any], param: str
) -> None:
    error = _error(await client.post("/v1/chat/completions", json=body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


async def test_body_must_be_an_object(client: AsyncTestClient[Any]) -> None:
    _error(await client.post("/v1/chat/completions", json=[CHAT]), 400)


async def test_completion_prompt_shape(client: AsyncTestClient[Any]) -> None:
    error = _error(
        await client.post("/v1/completions", json={"model": "fake-model", "prompt": [1, "a"]}), 400
    )
    assert error["param"] == "prompt"


async def test_unknown_model(client: AsyncTestClient[Any]) -> None:
    error = _error(await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-99"}), 404)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    _error(await client.get("/v1/models/gpt-99"), 404)


async def test_missing_and_wrong_keys(client: AsyncTestClient[Any]) -> None:
    del client.headers["authorization"]
    error = _error(await client.post("/v1/chat/completions", json=CHAT), 401)
    assert error["code"] == "invalid_api_key"
    client.headers["authorization"] = "Bearer hhh-wrong"
    _error(await client.post("/v1/chat/completions", json=CHAT), 401)
    client.headers["authorization"] = "Basic dXNlcjpwYXNz"
    _error(await client.get("/v1/models"), 401)


async def test_operations_endpoints_need_no_key(client: AsyncTestClient[Any]) -> None:
    del client.headers["authorization"]
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200


async def test_body_over_the_limit(client: AsyncTestClient[Any]) -> None:
    huge = {**CHAT, "messages": [{"role": "user", "content": "x" * 70_000}]}
    assert _error(await client.post("/v1/chat/completions", json=huge), 413)["code"] == "request_too_large"


async def test_upstream_unreachable_and_timeout(client: AsyncTestClient[Any]) -> None:
    error = _error(await client.post("/v1/chat/completions", json={**CHAT, "model": "unreachable"}), 502)
    assert error["code"] == "upstream_unreachable"
    error = _error(await client.post("/v1/chat/completions", json={**CHAT, "model": "timeout"}), 504)
    assert error["code"] == "upstream_timeout"
    stream = {**CHAT, "model": "timeout", "stream": True}
    assert _error(await client.post("/v1/chat/completions", json=stream), 504)["code"] == "upstream_timeout"


async def test_upstream_error_without_envelope_is_rewrapped(client: AsyncTestClient[Any]) -> None:
    error = _error(await client.post("/v1/chat/completions", json={**CHAT, "model": "plain-503"}), 503)
    assert error["message"] == "upstream overloaded, try later"
    assert error["type"] == "upstream_error"
    assert error["code"] == 503


async def test_upstream_envelope_is_kept(client: AsyncTestClient[Any]) -> None:
    error = _error(await client.post("/v1/chat/completions", json={**CHAT, "model": "enveloped-429"}), 429)
    assert error == {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit"}


async def test_unknown_route_and_method(client: AsyncTestClient[Any]) -> None:
    assert _error(await client.get("/v1/nothing-here"), 404)["code"] == "not_found"
    assert _error(await client.get("/v1/chat/completions"), 405)["code"] == "method_not_allowed"


async def test_a_bug_is_a_500_envelope_without_trace(
    client: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: Any) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("gateway.routes.inference.prepare_request", explode)
    response = await client.post("/v1/chat/completions", json=CHAT)
    error = _error(response, 500)
    assert "secret internal detail" not in response.text
    assert error["type"] == "server_error"
