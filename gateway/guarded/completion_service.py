"""A completion request's whole path: policy → input guards → upstream → output guards → response."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Response

from feedback.assembler import EventMeta, assemble, event_from_response
from feedback.events import ChoiceReport, GuardrailsReport, Timings
from feedback.recorder import EventRecorder
from gateway.auth import Tenant
from gateway.context import RequestContext
from gateway.errors import InvalidRequest
from gateway.guarded.guardrails import Guardrails, ResolvedPolicy, drop_logprobs, summary_header
from gateway.guarded.sampling import CandidateSampler
from gateway.guarded.sources import REQUEST_FIELD, request_sources
from gateway.guarded.stream_guard import StreamGuard
from gateway.guarded.text_slots import (
    Slot,
    chat_choice_slots,
    chat_request_slots,
    embedding_input_slots,
    is_token_prompt,
    prompt_slots,
    text_choice_slots,
)
from gateway.relay.proxy import ForwardCall, Proxy, UpstreamStream, json_response
from guards.verdict import JudgeContext

GUARDRAILS_HEADER = "x-hhh-guardrails"


def _refuse_chat(choice: dict[str, Any], refusal: str) -> None:
    # Only the refusal stays: reasoning, tool and function calls and logprobs all spell the refused text.
    role = (choice.get("message") or {}).get("role", "assistant")
    choice["message"] = {"role": role, "content": None, "refusal": refusal}
    drop_logprobs(choice)
    choice["finish_reason"] = "content_filter"


def _refuse_text(choice: dict[str, Any], refusal: str) -> None:
    choice["text"] = ""
    drop_logprobs(choice)
    choice["finish_reason"] = "content_filter"


class _Kind(msgspec.Struct, frozen=True):
    endpoint: str
    text_field: str
    request_slots: Callable[[dict[str, Any]], list[Slot]]
    choice_slots: Callable[[dict[str, Any]], list[Slot]]
    refuse: Callable[[dict[str, Any], str], None]


CHAT = _Kind("chat.completions", "chat", chat_request_slots, chat_choice_slots, _refuse_chat)
TEXT = _Kind("completions", "text", prompt_slots, text_choice_slots, _refuse_text)


class CompletionService:
    def __init__(
        self,
        proxy: Proxy,
        guardrails: Guardrails,
        recorder: EventRecorder | None = None,
        sampler: CandidateSampler | None = None,
    ) -> None:
        self.proxy = proxy
        self.guardrails = guardrails
        self.recorder = recorder
        self.sampler = sampler

    async def chat(self, context: RequestContext, tenant: Tenant, call: ForwardCall) -> Response[Any]:
        return await self._complete(context, tenant, call, CHAT)

    async def text(self, context: RequestContext, tenant: Tenant, call: ForwardCall) -> Response[Any]:
        return await self._complete(context, tenant, call, TEXT)

    async def _complete(
        self, context: RequestContext, tenant: Tenant, call: ForwardCall, kind: _Kind
    ) -> Response[Any]:
        raw = call.raw
        resolved = self.guardrails.resolve(tenant.name, call.model, raw)
        had_sources_field = REQUEST_FIELD in raw
        sources = request_sources(raw) if kind is CHAT else []
        # The gateway's own fields ("guardrails", "sources") never reach the upstream.
        changed = resolved.tightened or had_sources_field
        meta = EventMeta(context.request_id, tenant.name, call.model, kind.endpoint, call.stream)
        if not resolved.policy.input and not resolved.policy.output:
            if changed:
                call = msgspec.structs.replace(call, raw=raw, body=msgspec.json.encode(raw))
            self._sample(meta, call, resolved, kind)
            if self.recorder is None:
                return await self.proxy.forward(context, call)  # nothing to guard or keep: the plain relay
            if call.stream:
                stream = await self.proxy.stream(context, call)
                return self.proxy.sse_response(self._recorded_stream(stream, meta, call, context))
            answer = await self.proxy.complete(context, call)
            self._record(meta, call, msgspec.json.decode(answer.content), context)
            return json_response(answer)
        report = GuardrailsReport(policy=resolved.name)
        judge_context = JudgeContext(sources=sources)
        if resolved.policy.input:
            if kind is TEXT and is_token_prompt(raw):
                raise InvalidRequest(
                    "Token-id prompts cannot be checked by this gateway's input guards; send text.",
                    param="prompt",
                )
            report.input = await self.guardrails.check_input(resolved, kind.request_slots(raw))
            changed = changed or report.input.decision == "redact"
        if changed:  # the upstream sees the redacted request, never the original
            call = msgspec.structs.replace(call, raw=raw, body=msgspec.json.encode(raw))
        self._sample(meta, call, resolved, kind)  # only now: after the input guards passed and redacted
        if call.stream:
            return await self._stream(context, call, kind, resolved, report, judge_context, meta)
        return await self._whole(context, call, kind, resolved, report, judge_context, meta)

    async def embed(self, context: RequestContext, tenant: Tenant, call: ForwardCall) -> Response[Any]:
        """Embeddings get the input guards: what is embedded is what an upstream would otherwise read."""
        raw = call.raw
        resolved = self.guardrails.resolve(tenant.name, call.model, raw)
        changed = resolved.tightened
        if resolved.policy.input:
            if is_token_prompt(raw, "input"):
                raise InvalidRequest(
                    "Token-id inputs cannot be checked by this gateway's input guards; send text.",
                    param="input",
                )
            report = await self.guardrails.check_input(resolved, embedding_input_slots(raw))
            changed = changed or report.decision == "redact"
        if changed:
            call = msgspec.structs.replace(call, raw=raw, body=msgspec.json.encode(raw))
        return await self.proxy.forward(context, call)

    def _sample(self, meta: EventMeta, call: ForwardCall, resolved: ResolvedPolicy, kind: _Kind) -> None:
        if self.sampler is None or kind is not CHAT or not self.sampler.draw(meta.tenant):
            return
        snapshot = msgspec.structs.replace(call, raw=msgspec.json.decode(call.body))  # frozen, as sent

        async def guard(choices: list[dict[str, Any]]) -> list[ChoiceReport]:
            return await self.guardrails.check_choices(resolved, choices, kind.choice_slots, kind.refuse)

        meta.candidates_requested = self.sampler.sample(meta, snapshot, guard)

    def _record(
        self, meta: EventMeta, call: ForwardCall, body: dict[str, Any], context: RequestContext
    ) -> None:
        if self.recorder is not None:
            self.recorder.record(event_from_response(meta, call.raw, body, _timings(context)))

    def _recorded_stream(
        self, stream: UpstreamStream, meta: EventMeta, call: ForwardCall, context: RequestContext
    ) -> UpstreamStream:
        if self.recorder is None:
            return stream
        chunks = assemble(stream.chunks, meta, call.raw, self.recorder.record, lambda: _timings(context))
        return UpstreamStream(chunks, stream.responses)

    async def _whole(
        self,
        context: RequestContext,
        call: ForwardCall,
        kind: _Kind,
        resolved: ResolvedPolicy,
        report: GuardrailsReport,
        judge_context: JudgeContext,
        meta: EventMeta,
    ) -> Response[Any]:
        answer = await self.proxy.complete(context, call)
        body = msgspec.json.decode(answer.content)
        choices = body.get("choices") or []
        report.output = await self.guardrails.check_choices(
            resolved, choices, kind.choice_slots, kind.refuse, judge_context
        )
        body["guardrails"] = report
        self._record(meta, call, body, context)
        answer = msgspec.structs.replace(answer, content=msgspec.json.encode(body))
        return json_response(answer, headers={GUARDRAILS_HEADER: summary_header(report)})

    async def _stream(
        self,
        context: RequestContext,
        call: ForwardCall,
        kind: _Kind,
        resolved: ResolvedPolicy,
        report: GuardrailsReport,
        judge_context: JudgeContext,
        meta: EventMeta,
    ) -> Response[Any]:
        stream = await self.proxy.stream(context, call)
        guard = StreamGuard(self.guardrails, resolved, kind.text_field, judge_context)
        guard.report.input = report.input
        guarded = self._recorded_stream(
            UpstreamStream(guard.run(stream.chunks), stream.responses), meta, call, context
        )
        return self.proxy.sse_response(guarded, headers={GUARDRAILS_HEADER: summary_header(report)})


def _timings(context: RequestContext) -> Timings:
    total = time.perf_counter() - context.started
    return Timings(
        total_ms=round(total * 1000, 3),
        upstream_ms=round(context.upstream_seconds * 1000, 3),
        overhead_ms=round(context.overhead_seconds() * 1000, 3),
    )
