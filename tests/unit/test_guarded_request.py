"""The prepared request: made once from the client's body, never changed in place, encoded in one place."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.errors import InvalidRequest
from gateway.guarded.endpoints import CHAT, EMBEDDINGS, TEXT, Endpoint
from gateway.guarded.guardrails import Guardrails
from gateway.guarded.request import GuardedRequest, prepare_request
from gateway.guarded.sampling import as_candidate
from gateway.limits import LimitsSettings
from guards.pipeline import GuardEngine
from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule
from tests.support.fake_guards import EmailGuard


def _rails(input_rules: bool = True) -> Guardrails:
    rules = [Rule(guard="pii", action=Action.REDACT)] if input_rules else []
    book = PolicyBook(default=Policy(input=rules))
    return Guardrails(GuardEngine({"pii": EmailGuard()}), book, {"pii": GuardSpec(type="pii")})


def _prepare(endpoint: Endpoint, raw: dict[str, Any], rails: Guardrails | None = None) -> GuardedRequest:
    return prepare_request(endpoint, raw, msgspec.json.encode(raw), "t", rails or _rails(), LimitsSettings())


CHAT_BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Hi, I am Ann."}]}


def test_an_unchanged_body_goes_upstream_as_the_client_sent_it() -> None:
    client_bytes = msgspec.json.encode(CHAT_BODY)
    request = prepare_request(CHAT, CHAT_BODY, client_bytes, "t", _rails(), LimitsSettings())
    assert request.forward_call().body is client_bytes  # no re-encoding on the plain path


@pytest.mark.parametrize("endpoint", [CHAT, TEXT, EMBEDDINGS])
def test_the_gateways_own_fields_never_reach_the_upstream(endpoint: Endpoint) -> None:
    body: dict[str, Any] = {"chat.completions": CHAT_BODY, "completions": {"model": "m", "prompt": "Hi"}}.get(
        endpoint.name, {"model": "m", "input": "Hi"}
    )
    raw = {**body, "guardrails": {"input": [{"guard": "pii"}]}, "sources": [{"text": "A source."}]}
    before = msgspec.json.encode(raw)
    request = _prepare(endpoint, raw)
    sent = msgspec.json.decode(request.forward_call().body)
    assert "guardrails" not in sent
    assert "sources" not in sent
    assert msgspec.json.encode(raw) == before  # preparing reads the client's body, never changes it
    assert [s.text for s in request.sources] == (["A source."] if endpoint is CHAT else [])


def test_a_redaction_makes_a_new_request_and_leaves_the_old_one_alone() -> None:
    request = _prepare(CHAT, CHAT_BODY)
    redacted = request.redacted(["Hi, I am <PERSON>."])
    assert redacted.body["messages"][0]["content"] == "Hi, I am <PERSON>."
    assert request.body["messages"][0]["content"] == "Hi, I am Ann."
    assert CHAT_BODY["messages"][0]["content"] == "Hi, I am Ann."
    assert msgspec.json.decode(redacted.forward_call().body) == redacted.body


def test_token_prompts_are_refused_only_where_input_guards_would_read_them() -> None:
    raw = {"model": "m", "prompt": [1, 2, 3]}
    with pytest.raises(InvalidRequest) as caught:
        _prepare(TEXT, raw)
    assert caught.value.param == "prompt"
    assert _prepare(TEXT, raw, _rails(input_rules=False)).body == raw


def test_a_candidate_is_the_request_again_whole_with_one_choice() -> None:
    raw = {**CHAT_BODY, "stream": True, "n": 3, "stream_options": {"include_usage": True}}
    request = _prepare(CHAT, raw)
    candidate = as_candidate(request, {"model": "other"})
    sent = msgspec.json.decode(candidate.forward_call().body)
    assert (sent["model"], sent["stream"], sent["n"]) == ("other", False, 1)
    assert "stream_options" not in sent
    assert (candidate.model, candidate.stream, candidate.n) == ("other", False, 1)
    assert request.body["n"] == 3  # the original is untouched


def test_a_misspelt_category_in_the_request_is_a_400_naming_it() -> None:
    raw = {**CHAT_BODY, "guardrails": {"output": [{"guard": "pii", "categories": ["EMAIL_ADRESS"]}]}}
    with pytest.raises(InvalidRequest) as caught:
        _prepare(CHAT, raw)
    assert caught.value.param == "guardrails.output[0].categories"
    assert "EMAIL_ADRESS" in str(caught.value)
