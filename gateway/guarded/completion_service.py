"""A prepared request's path: input guards → upstream → output guards → response, recorded.

Every step takes the one ``GuardedRequest`` (``gateway.guarded.request``); a redaction makes a new one.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import msgspec
from litestar import Response

from feedback.assembler import EventMeta, assemble, event_from_response
from feedback.events import ChoiceReport, GuardrailsReport, StageReport, Timings
from feedback.recorder import EventRecorder
from gateway.context import RequestContext
from gateway.guarded.best_of_n import BestOfNSampler, candidate_events
from gateway.guarded.guardrails import Guardrails, summary_header
from gateway.guarded.pseudonyms import restore_choices
from gateway.guarded.request import GuardedRequest
from gateway.guarded.revision import NOT_REVISED, Reviser
from gateway.guarded.sampling import CandidateSampler
from gateway.guarded.stream_guard import StreamGuard
from gateway.guarded.stream_restore import restore_stream
from gateway.guarded.stream_revision import StreamReviser
from gateway.guarded.text_slots import slot_kinds
from gateway.guarded.whole_stream import stream_of, whole_answer_chunks
from gateway.relay.proxy import Proxy, UpstreamAnswer, UpstreamStream, json_response
from gateway.relay.streaming import close_responses
from guards.verdict import JudgeContext

GUARDRAILS_HEADER = "x-hhh-guardrails"
CANDIDATES_NOT_REVISED = "sampled candidates are not revised: the rule's fallback applied"


class CompletionService:
    def __init__(
        self,
        proxy: Proxy,
        guardrails: Guardrails,
        recorder: EventRecorder | None = None,
        sampler: CandidateSampler | None = None,
        reviser: Reviser | None = None,
        best_of_n: BestOfNSampler | None = None,
    ) -> None:
        self.proxy = proxy
        self.guardrails = guardrails
        self.recorder = recorder
        self.sampler = sampler
        self.reviser = reviser  # None: revise rules apply their fallback
        self.best_of_n = best_of_n or BestOfNSampler(proxy, guardrails, {}, reviser)

    async def serve(self, context: RequestContext, request: GuardedRequest) -> Response[Any]:
        if request.endpoint.answer is None:  # embeddings: no answer text
            return await self._embed(context, request)
        return await self._complete(context, request)

    async def _complete(self, context: RequestContext, request: GuardedRequest) -> Response[Any]:
        meta = EventMeta(
            context.request_id, request.tenant, request.model, request.endpoint.name, request.stream
        )
        if request.presenter is not None:
            meta.completion_id = request.presenter.completion_id
        report: GuardrailsReport | None = None
        if request.guarded:
            report = GuardrailsReport(policy=request.policy.name)
            if request.policy.policy.input:
                request, report.input = await self._check_input(request)
        self._sample(meta, request)  # only now: after the input guards passed and redacted
        if report is None:
            return await self._relay(context, request, meta)
        if request.policy.policy.best_of_n is not None:
            return await self._best_of_n(context, request, report, meta)
        if request.stream:
            return await self._stream(context, request, report, meta)
        return await self._whole(context, request, report, meta)

    async def _embed(self, context: RequestContext, request: GuardedRequest) -> Response[Any]:
        """Embeddings get the input guards: what is embedded is what an upstream would otherwise read."""
        if request.policy.policy.input:
            request, _ = await self._check_input(request)
        return await self.proxy.forward(context, request.forward_call())

    async def _check_input(self, request: GuardedRequest) -> tuple[GuardedRequest, StageReport]:
        """The input guards' report, and the request the upstream may see (redacted: a new request)."""
        slots = request.endpoint.request_slots(request.body)
        answered = request.endpoint.answer is not None  # embeddings: no answer to restore values in
        kinds = slot_kinds(request.body, slots)
        sources = request.sources[: request.supplied_sources]
        checked = await self.guardrails.check_input(
            request.policy, slots, answered, kinds, sources, request.tenant
        )
        if any(text != slot.text for slot, text in zip(slots, checked.texts, strict=True)):
            request = request.redacted(checked.texts, checked.pseudonyms)
        return request, checked.report

    async def _relay(
        self, context: RequestContext, request: GuardedRequest, meta: EventMeta
    ) -> Response[Any]:
        """Nothing to guard: the plain relay, recorded when recording is on (the client's own bytes both
        ways when nothing is recorded or reshaped)."""
        call = request.forward_call()
        if self.recorder is None and request.presenter is None:
            return await self.proxy.forward(context, call)
        if request.stream:
            stream = await self.proxy.stream(context, call)
            return self._sse(request, self._recorded_stream(stream, meta, request, context))
        answer = await self.proxy.complete(context, call)
        self._record(meta, request, msgspec.json.decode(answer.content), context)
        return self._json(request, answer)

    def _sample(self, meta: EventMeta, request: GuardedRequest) -> None:
        if self.sampler is None or not request.endpoint.ranked or not self.sampler.draw(meta.tenant):
            return

        async def guard(choices: list[dict[str, Any]]) -> list[ChoiceReport]:
            return await self._check_choices(request, choices, not_revised=CANDIDATES_NOT_REVISED)

        meta.candidates_requested = self.sampler.sample(meta, request, guard)

    async def _check_choices(
        self,
        request: GuardedRequest,
        choices: list[dict[str, Any]],
        context: JudgeContext | None = None,
        not_revised: str = NOT_REVISED,
    ) -> list[ChoiceReport]:
        answer = request.endpoint.answer
        assert answer is not None  # only completions reach here (see serve)
        return await self.guardrails.check_choices(
            request.policy, choices, answer.slots, answer.refuse, context, not_revised
        )

    async def _check_whole(
        self, context: RequestContext, request: GuardedRequest, choices: list[dict[str, Any]], event_id: str
    ) -> list[ChoiceReport]:
        """The output guards on a whole answer's choices, applied in place; revised where a revise rule
        fired (before anything is recorded or restored: the critic sees placeholders only)."""
        judge_context = request.judge_context()
        answer = request.endpoint.answer
        if self.reviser is None or answer is None:
            return await self._check_choices(request, choices, judge_context)
        judgements = await self.guardrails.judge_choices(request.policy, choices, answer.slots, judge_context)
        return await self.reviser.settle(context, request, judgements, judge_context, event_id, answer.refuse)

    def _record(
        self, meta: EventMeta, request: GuardedRequest, body: dict[str, Any], context: RequestContext
    ) -> None:
        if self.recorder is not None:
            self.recorder.record(event_from_response(meta, request.body, body, _timings(context)))

    def _recorded_stream(
        self, stream: UpstreamStream, meta: EventMeta, request: GuardedRequest, context: RequestContext
    ) -> UpstreamStream:
        if self.recorder is None:
            return stream
        chunks = assemble(stream.chunks, meta, request.body, self.recorder.record, lambda: _timings(context))
        return UpstreamStream(chunks, stream.responses)

    async def _whole(
        self, context: RequestContext, request: GuardedRequest, report: GuardrailsReport, meta: EventMeta
    ) -> Response[Any]:
        answer = await self.proxy.complete(context, request.forward_call())
        body = msgspec.json.decode(answer.content)
        choices = body.get("choices") or []
        report.output = await self._check_whole(context, request, choices, meta.event_id)
        body["guardrails"] = report
        self._record(meta, request, body, context)  # with the placeholders, never their values
        answer = msgspec.structs.replace(answer, content=_restored(request, msgspec.json.encode(body)))
        return self._json(request, answer, headers={GUARDRAILS_HEADER: summary_header(report)})

    async def _best_of_n(
        self, context: RequestContext, request: GuardedRequest, report: GuardrailsReport, meta: EventMeta
    ) -> Response[Any]:
        """The best of n whole answers per choice (``gateway.guarded.best_of_n``); a stream gets the
        winners as chunks once they are chosen."""
        picked = await self.best_of_n.pick(context, request, meta.event_id)
        report.output = picked.reports
        body = {**picked.body, "guardrails": report}
        if self.recorder is not None:  # with the placeholders, never their values; the losers as candidates
            losers = candidate_events(meta, request, picked)
            meta.candidates_requested += len(losers)
            event = event_from_response(meta, request.body, body, _timings(context))
            event.best_of_n = picked.record
            for recorded in (event, *losers):
                self.recorder.record(recorded)
        content = _restored(request, msgspec.json.encode(body))
        headers = {GUARDRAILS_HEADER: summary_header(report)}
        if not request.stream:
            return self._json(request, UpstreamAnswer(content, picked.content_type), headers=headers)
        assert request.endpoint.answer is not None  # only completions reach here (see serve)
        chat = request.endpoint.answer.stream_field == "chat"
        chunks = whole_answer_chunks(msgspec.json.decode(content), chat, request.include_usage)
        return self._sse(request, UpstreamStream(stream_of(chunks), []), headers=headers)

    async def _stream(
        self, context: RequestContext, request: GuardedRequest, report: GuardrailsReport, meta: EventMeta
    ) -> Response[Any]:
        stream = await self.proxy.stream(context, request.forward_call())
        judge_context = request.judge_context()
        assert request.endpoint.answer is not None  # only completions reach here (see serve)
        field = request.endpoint.answer.stream_field
        reviser = None
        if self.reviser is not None:
            reviser = StreamReviser(self.reviser, context, request, judge_context, meta.event_id)
        guard = StreamGuard(
            self.guardrails,
            request.policy,
            field,
            judge_context,
            reviser,
            choices=request.n,
            stop_upstream=partial(close_responses, stream.responses),
            read_ahead=stream.read_ahead,
        )
        guard.report.input = report.input
        guarded = self._recorded_stream(
            UpstreamStream(guard.run(stream.chunks), stream.responses), meta, request, context
        )
        if request.pseudonyms:  # after the recording: only the client's chunks get the values back
            restored = restore_stream(guarded.chunks, request.pseudonyms, chat=field == "chat")
            guarded = UpstreamStream(restored, guarded.responses)
        return self._sse(request, guarded, headers={GUARDRAILS_HEADER: summary_header(report)})

    def _json(
        self, request: GuardedRequest, answer: UpstreamAnswer, headers: dict[str, str] | None = None
    ) -> Response[Any]:
        """A whole answer as the client sees it (reshaped last: after recording and restoring)."""
        if request.presenter is not None:
            shown = request.presenter.whole(msgspec.json.decode(answer.content))
            answer = UpstreamAnswer(msgspec.json.encode(shown), "application/json")
        return json_response(answer, headers=headers)

    def _sse(
        self, request: GuardedRequest, stream: UpstreamStream, headers: dict[str, str] | None = None
    ) -> Response[Any]:
        """A stream as the client sees it (reshaped last: after recording and restoring)."""
        if request.presenter is None:
            return self.proxy.sse_response(stream, headers=headers)
        return self.proxy.sse_response(stream, headers=headers, encode=request.presenter.frames)


def _restored(request: GuardedRequest, content: bytes) -> bytes:
    """A whole answer with the request's own values back in place of its placeholders: decoded afresh,
    so the copy that was recorded keeps them."""
    if not request.pseudonyms or request.endpoint.answer is None:
        return content
    answer = msgspec.json.decode(content)
    restore_choices(answer.get("choices") or [], request.endpoint.answer.slots, request.pseudonyms)
    return msgspec.json.encode(answer)


def _timings(context: RequestContext) -> Timings:
    total = time.perf_counter() - context.started
    return Timings(
        total_ms=round(total * 1000, 3),
        upstream_ms=round(context.upstream_seconds * 1000, 3),
        overhead_ms=round(context.overhead_seconds() * 1000, 3),
    )
