"""A guarded request, prepared once: the policy that applies, the sources, and the body as the upstream
must see it. Nothing on the guarded path changes it in place; a redaction makes a new one."""

from __future__ import annotations

from typing import Any

import msgspec

from feedback.preferences.formats import dataset_prompt, messages_of
from gateway.errors import InvalidRequest
from gateway.guarded import guardrails, sources
from gateway.guarded.endpoints import Endpoint
from gateway.guarded.guardrails import Guardrails, ResolvedPolicy
from gateway.guarded.presentation import Presenter
from gateway.guarded.pseudonyms import Pseudonyms
from gateway.guarded.sources import request_source_texts, request_sources
from gateway.guarded.text_slots import is_token_prompt
from gateway.limits import LimitsSettings, check_candidates, check_input_budget, check_n
from gateway.relay.proxy import ForwardCall
from guards.verdict import JudgeContext, Source

# The gateway's own fields: read here, never sent upstream.
GATEWAY_FIELDS = frozenset({guardrails.REQUEST_FIELD, sources.REQUEST_FIELD})


class GuardedRequest(msgspec.Struct, frozen=True, kw_only=True):
    endpoint: Endpoint
    tenant: str
    model: str
    policy: ResolvedPolicy
    sources: tuple[Source, ...] = ()
    supplied_sources: int = 0  # how many of ``sources`` (the first) came in the ``sources`` field
    body: dict[str, Any]  # as the upstream must see it; never changed in place (see ``redacted``)
    stream: bool = False
    n: int = 1
    include_usage: bool = False
    prompt_chars: int = 0
    client_bytes: bytes | None = None  # the client's own encoding of ``body``, while it still is one
    # The values behind the body's numbered placeholders (input redaction), put back in the client's
    # answer; in memory only: never encoded, logged, recorded or sent.
    pseudonyms: Pseudonyms | None = None
    # How the client sees the answer when it asked another surface than chat (``/v1/responses``).
    presenter: Presenter | None = None

    @property
    def guarded(self) -> bool:
        policy = self.policy.policy
        return bool(policy.input or policy.output or policy.best_of_n is not None)

    def with_body(self, body: dict[str, Any]) -> GuardedRequest:
        return msgspec.structs.replace(self, body=body, client_bytes=None)

    def redacted(self, texts: list[str], pseudonyms: Pseudonyms | None = None) -> GuardedRequest:
        """This request with its texts (in ``endpoint.request_slots`` order) replaced: a new body; with
        the values of the placeholders in them, when there are any."""
        body = msgspec.json.decode(msgspec.json.encode(self.body))  # a deep copy of plain JSON
        for slot, text in zip(self.endpoint.request_slots(body), texts, strict=True):
            if text != slot.text:
                slot.write(text)
        return msgspec.structs.replace(self.with_body(body), pseudonyms=pseudonyms or None)

    def judge_context(self) -> JudgeContext:
        """What the output guards may know of this request: its sources, the prompt as one text (as a
        reward model was trained to read it), the model."""
        prompt = dataset_prompt(messages_of(self.body))
        return JudgeContext(sources=list(self.sources), prompt=prompt, model=self.model)

    def forward_call(self) -> ForwardCall:
        """The call to the upstream. The one place the body is encoded; the client's bytes go as they
        came when nothing was taken out or rewritten."""
        payload = self.client_bytes if self.client_bytes is not None else msgspec.json.encode(self.body)
        return ForwardCall(
            path=self.endpoint.path,
            model=self.model,
            body=payload,
            stream=self.stream,
            n=self.n,
            include_usage=self.include_usage,
            prompt_chars=self.prompt_chars,
        )


def prepare_request(
    endpoint: Endpoint,
    raw: dict[str, Any],
    client_bytes: bytes,
    tenant: str,
    rails: Guardrails,
    limits: LimitsSettings,
) -> GuardedRequest:
    """Check a decoded body and make its one prepared value; ``raw`` is not changed. Errors come in the
    order a client can fix them: the body's shape, its size, the gateway's own fields."""
    shape = endpoint.read(raw)
    check_n(shape.n, limits)
    texts = [slot.text for slot in endpoint.request_slots(raw)]
    if endpoint.takes_sources:
        texts += request_source_texts(raw)
    check_input_budget(texts, limits, endpoint.text_param)
    policy = rails.resolve(tenant, shape.model, raw.get(guardrails.REQUEST_FIELD))
    best_of_n = policy.policy.best_of_n
    if best_of_n is not None and endpoint.answer is not None:
        check_candidates(shape.n or 1, best_of_n.n, limits, policy.name)
    found = tuple(request_sources(raw)) if endpoint.takes_sources else ()
    if policy.policy.input and endpoint.token_field and is_token_prompt(raw, endpoint.token_field):
        raise InvalidRequest(
            f"Token-id {endpoint.token_field}s cannot be checked by this gateway's input guards; send text.",
            param=endpoint.token_field,
        )
    own = GATEWAY_FIELDS.intersection(raw)
    return GuardedRequest(
        endpoint=endpoint,
        tenant=tenant,
        model=shape.model,
        policy=policy,
        sources=found,
        supplied_sources=len(request_source_texts(raw)) if endpoint.takes_sources else 0,
        body={key: value for key, value in raw.items() if key not in own} if own else raw,
        stream=shape.stream,
        n=shape.n or 1,
        include_usage=shape.include_usage,
        prompt_chars=shape.prompt_chars,
        client_bytes=None if own else client_bytes,
    )
