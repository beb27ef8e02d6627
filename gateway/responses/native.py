"""``/v1/responses`` relayed natively to an upstream marked ``supports_responses: true``, still guarded.

The request goes the same guarded chat path as a translated one (``CompletionService``), with one part
swapped: the relay. ``NativeRelay`` is a ``Proxy`` whose chat calls are served by the upstream's own
``/v1/responses``:

- **in**: the chat body the guarded path would send (redacted by the input guards, who judged the chat
  translation of every text of the request) becomes the client's Responses body with the same rewrites
  (``gateway.responses.native_body``); stateful fields (``previous_response_id``, ``store``...) go as they
  came;
- **out**: the upstream's Response (or its stream events) is read as a chat completion (or chunks:
  ``gateway.responses.reverse``), so the output guards, stream windows, revision, recording and
  restoring apply unchanged; ``NativePresenter`` writes it back as a Response with the upstream's id and
  envelope (``store``, ``previous_response_id``, ``conversation``...), the output items being the guarded
  ones (the gateway's item ids; ``call_id``s kept).

The upstream's response id is bound to the caller's tenant as soon as the upstream names it, before the
client sees it (``gateway.responses.owners``): ``GET``, ``cancel`` and ``previous_response_id`` then reach
it for that tenant only.

An upstream that answers 404 to ``/responses`` has none: ``NotNative`` is raised before anything is sent
to the client, the upstream is remembered as not native, and the caller serves the request translated.
A request with stateful fields never falls back (its earlier turns live upstream): the 404 is relayed.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import msgspec

from feedback.events import GuardrailsReport
from gateway.context import RequestContext
from gateway.errors import GatewayError, InvalidRequest, ResponseNotFound, UpstreamStatus
from gateway.guarded.completion_service import CompletionService
from gateway.guarded.endpoints import CHAT, RESPONSES
from gateway.guarded.revision import NOT_REVISED
from gateway.relay.proxy import ForwardCall, Proxy, UpstreamAnswer, UpstreamStream
from gateway.relay.streaming import Chunk, decode_chunks
from gateway.relay.upstream import Upstream
from gateway.relay.upstream_shapes import decode_answer
from gateway.responses.items import Placement
from gateway.responses.native_body import NativeBody
from gateway.responses.owners import TenantResponses
from gateway.responses.presenter import ResponsesPresenter
from gateway.responses.request import TranslatedRequest
from gateway.responses.response import response_from_chat
from gateway.responses.reverse import ChunkReader, chat_chunks, chat_completion
from gateway.responses.sse import sse_frames
from gateway.responses.stream import response_events

log = logging.getLogger("hhh.responses")

# A stateful call is not ranked against extra samples: those would be drawn without its stored turns.
STATEFUL_RESPONSES = msgspec.structs.replace(RESPONSES, ranked=False)
# What of the upstream's envelope the gateway never relays as it came: the output is the guarded one.
_REPLACED = ("output", "output_text", "guardrails", "status", "incomplete_details", "usage")


class NotNative(Exception):
    """The upstream has no ``/responses`` (it answered 404): serve the request translated."""


class NativeRelay(Proxy):
    def __init__(
        self, proxy: Proxy, body: NativeBody, translated: TranslatedRequest, owner: TenantResponses
    ) -> None:
        super().__init__(proxy.pool, proxy.metrics, proxy.relay, proxy.drain)
        self.body = body
        self.translated = translated
        self.owner = owner
        self.response: dict[str, Any] = {}  # the upstream's Response, as its answer (or last event) had it
        self._reader: ChunkReader | None = None
        self._model = ""
        self._bound: set[str] = set()

    @property
    def upstream_response(self) -> dict[str, Any]:
        return self._reader.response if self._reader is not None else self.response

    async def bind(self) -> None:
        """Bind the upstream's response id to the caller's tenant, before the client sees it."""
        response_id = self.upstream_response.get("id")
        if not isinstance(response_id, str) or not response_id or response_id in self._bound:
            return
        self._bound.add(response_id)
        upstream = await self.pool.route(self._model)
        await self.owner.bind(response_id, upstream.name)

    def _native(self, call: ForwardCall) -> ForwardCall:
        self._model = call.model
        return ForwardCall(
            path="/responses",
            model=call.model,
            body=self.body.encode(call.body),
            stream=call.stream,
            prompt_chars=call.prompt_chars,
        )

    async def complete(self, context: RequestContext, call: ForwardCall) -> UpstreamAnswer:
        try:
            answer = await super().complete(context, self._native(call))
        except UpstreamStatus as exc:
            await self._maybe_not_native(exc, call.model)
            raise
        self.response = msgspec.json.decode(answer.content)  # a JSON object: checked by the relay
        await self.bind()  # even a failed one: it exists upstream, and is this tenant's
        if self.response.get("status") == "failed":
            raise UpstreamStatus(502, msgspec.json.encode({"error": self.response.get("error") or {}}))
        return UpstreamAnswer(msgspec.json.encode(chat_completion(self.response)), "application/json")

    async def stream(
        self,
        context: RequestContext,
        call: ForwardCall,
        decode: Callable[[AsyncIterator[str]], AsyncIterator[Chunk]] = decode_chunks,
    ) -> UpstreamStream:
        self._reader = ChunkReader()
        try:
            stream = await super().stream(
                context, self._native(call), partial(chat_chunks, reader=self._reader)
            )
        except UpstreamStatus as exc:
            await self._maybe_not_native(exc, call.model)
            raise
        stream.read_ahead = False  # the upstream's envelope (``upstream_response``) changes as it is read
        return stream

    async def _maybe_not_native(self, exc: UpstreamStatus, model: str) -> None:
        if exc.status_code != 404 or self.translated.stateful or exc.code == "model_not_found":
            return
        upstream = await self.pool.route(model)
        if upstream.supports_responses:
            log.warning("upstream %s has no /responses (404): translating to chat from now on", upstream.name)
            upstream.supports_responses = False
        raise NotNative


class NativePresenter(ResponsesPresenter):
    """A native answer as the client sees it: the upstream's Response id and envelope, the guarded output.

    ``completion_id`` is empty: the id is the upstream's, known only once it answers, so the recorded event
    takes the answer's own id (which the relay set to the upstream's)."""

    def __init__(self, translated: TranslatedRequest, relay: NativeRelay) -> None:
        super().__init__(translated)
        self.relay = relay

    @property
    def completion_id(self) -> str:
        return ""

    def _adopt(self, upstream: dict[str, Any]) -> None:
        if isinstance(upstream.get("id"), str) and upstream["id"]:
            self._id = upstream["id"]
        if isinstance(upstream.get("created_at"), int | float):
            self._created_at = upstream["created_at"]

    def whole(self, body: dict[str, Any]) -> dict[str, Any]:
        self._adopt(self.relay.upstream_response)
        return overlaid(self.relay.upstream_response, super().whole(body))

    def frames(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[bytes]:
        return sse_frames(self._events(chunks))

    async def _events(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[dict[str, Any]]:
        """The stream's events, begun once the first chunk is in: it comes of the upstream's
        ``response.created``, whose id and envelope every event's Response then carries."""
        relabelled = self._relabelled(chunks)
        first: list[Chunk] = []
        failure: GatewayError | None = None
        try:
            first.append(await anext(relabelled))
        except StopAsyncIteration:
            pass
        except GatewayError as exc:  # told the Responses way, after response.created
            failure = exc
        self._adopt(self.relay.upstream_response)
        await self.relay.bind()
        replayed = _replayed(first, failure, relabelled)
        events = response_events(replayed, self.translated, response_id=self._id, created_at=self._created_at)
        async for event in events:
            if isinstance(event.get("response"), dict):
                event["response"] = overlaid(self.relay.upstream_response, event["response"])
            yield event


async def _replayed(
    first: list[Chunk], failure: GatewayError | None, rest: AsyncIterator[Chunk]
) -> AsyncIterator[Chunk]:
    for chunk in first:
        yield chunk
    if failure is not None:
        raise failure
    if first:
        async for chunk in rest:
            yield chunk


def overlaid(upstream: dict[str, Any], guarded: dict[str, Any]) -> dict[str, Any]:
    """The upstream's Response envelope, with the guarded output, status and report. A Response still
    queued, running (``background``) or cancelled keeps its status, and an empty output stays empty."""
    if not upstream:
        return guarded
    merged = {key: value for key, value in upstream.items() if key not in _REPLACED}
    merged["id"] = guarded["id"]
    filtered = (guarded.get("incomplete_details") or {}).get("reason") == "content_filter"
    pending = upstream.get("status") in ("queued", "in_progress", "cancelled") and not filtered
    merged.update((key, guarded.get(key)) for key in ("status", "incomplete_details", "output"))
    if pending:
        merged.update(status=upstream["status"], incomplete_details=None)
        if not upstream.get("output"):
            merged["output"] = []
    merged["usage"] = guarded.get("usage") or upstream.get("usage")
    if "guardrails" in guarded:
        merged["guardrails"] = guarded["guardrails"]
    return merged


def served_natively(service: CompletionService, relay: NativeRelay) -> CompletionService:
    """The guarded path with the native relay in place of the proxy (a shallow copy per request: the
    guards, recorder and sampler are the service's own)."""
    native = copy.copy(service)
    native.proxy = relay
    return native


# --- GET /v1/responses/{id} and POST /v1/responses/{id}/cancel ---------------------------------------


def _none_kept() -> GatewayError:
    return ResponseNotFound(
        why="No response can be reached here: this gateway stores no responses, and no upstream with its "
        "own /v1/responses (supports_responses) serves this model."
    )


async def stored_upstream(
    service: CompletionService, owner: TenantResponses, response_id: str, model: str | None
) -> Upstream:
    """The native upstream that keeps ``response_id``, which must be the caller's (``owners``: any other id
    is a 404, the same as an unknown one): the one it was made on, else the one serving ``model`` (the
    ``model`` query parameter), else the only native upstream."""
    native = [upstream for upstream in service.proxy.pool.upstreams if upstream.supports_responses]
    if not native:
        raise _none_kept()
    binding = await owner.owned(response_id)
    if not binding.upstream:
        raise ResponseNotFound(
            why="This response was served through chat completions (its upstream has no /v1/responses): "
            "nothing of it is stored, here or upstream."
        )
    made_on = [upstream for upstream in native if upstream.name == binding.upstream]
    if made_on:
        return made_on[0]
    if model is not None:
        upstream = await service.proxy.pool.route(model)
        if not upstream.supports_responses:
            raise _none_kept()
        return upstream
    if len(native) > 1:
        raise InvalidRequest(
            "More than one upstream keeps responses; name the model that made this one in the 'model' "
            "query parameter.",
            param="model",
        )
    return native[0]


async def stored_response(
    service: CompletionService,
    context: RequestContext,
    owner: TenantResponses,
    response_id: str,
    model: str | None,
    cancel: bool = False,
) -> dict[str, Any]:
    """A stored Response of the caller's fetched (or cancelled) upstream, its output guarded like a whole
    answer."""
    upstream = await stored_upstream(service, owner, response_id, model)
    path = f"/responses/{response_id}" + ("/cancel" if cancel else "")
    started = time.perf_counter()
    try:
        answer = await service.proxy.pool.post(
            upstream, path, b"", context.request_id, method="POST" if cancel else "GET"
        )
    finally:
        context.upstream_seconds += time.perf_counter() - started
    response = decode_answer(answer.content, completion=False)
    answered_model = response.get("model")
    named = model or (answered_model if isinstance(answered_model, str) else "")
    resolved = service.guardrails.resolve(owner.tenant, named)
    completion = chat_completion(response)
    if resolved.policy.output:
        assert CHAT.answer is not None
        reports = await service.guardrails.check_choices(
            resolved, completion["choices"], CHAT.answer.slots, CHAT.answer.refuse, None, NOT_REVISED
        )
        completion["guardrails"] = GuardrailsReport(policy=resolved.name, output=reports)
    no_request = TranslatedRequest(chat={"model": named}, echo={}, placement=Placement())
    guarded = response_from_chat(
        msgspec.to_builtins(completion), no_request, response_id=response_id, created_at=0.0
    )
    return overlaid(response, guarded)
