"""Extra candidates for ranking, asked for after the client has its answer.

For a configured fraction of a tenant's traffic, the request (as the upstream saw it: redacted) is sent
again with other temperatures and/or to other models, each answer is put through the same output guards,
and recorded as a candidate of the original request. The client never waits for any of this; a semaphore
bounds the extra load on upstreams; failures are logged and counted, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from feedback.assembler import EventMeta, event_from_response
from feedback.events import ChoiceReport, GuardrailsReport
from feedback.recorder import EventRecorder
from gateway.context import RequestContext
from gateway.guarded.request import GuardedRequest
from gateway.relay.proxy import Proxy
from gateway.settings import FeedbackSettings

log = logging.getLogger("hhh.sampling")

# Applies the output guards to a whole answer's choices, in place; returns the report.
GuardChoices = Callable[[list[dict[str, Any]]], Awaitable[list[ChoiceReport]]]


class CandidateSampler:
    def __init__(
        self, proxy: Proxy, recorder: EventRecorder, settings: FeedbackSettings, seed: int | None = None
    ):
        self.proxy = proxy
        self.recorder = recorder
        self.settings = settings
        self._random = random.Random(seed)
        self._gate = asyncio.Semaphore(settings.sampling.max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()

    def fraction(self, tenant: str) -> float:
        return self.settings.tenant_sampling.get(tenant, self.settings.sampling.fraction)

    def draw(self, tenant: str) -> bool:
        """Whether this request of ``tenant`` gets extra candidates."""
        return self._random.random() < self.fraction(tenant)

    def sample(self, meta: EventMeta, request: GuardedRequest, guard: GuardChoices) -> int:
        """Schedule the extra candidates; returns at once, with how many were scheduled."""
        variations: list[dict[str, Any]] = [{"temperature": t} for t in self.settings.sampling.temperatures]
        variations += [{"model": m} for m in self.settings.sampling.models if m != request.model]
        for number, variation in enumerate(variations):
            task = asyncio.create_task(self._candidate(meta, request, variation, guard, number))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(variations)

    async def _candidate(
        self,
        meta: EventMeta,
        request: GuardedRequest,
        variation: dict[str, Any],
        guard: GuardChoices,
        number: int,
    ) -> None:
        candidate = as_candidate(request, variation)
        context = RequestContext(f"{meta.request_id}.{number}")
        try:
            async with self._gate:
                answer = await self.proxy.complete(context, candidate.forward_call())
            body = msgspec.json.decode(answer.content)
            body["guardrails"] = GuardrailsReport(output=await guard(body.get("choices") or []))
        except Exception as exc:  # noqa: BLE001 - a candidate is a bonus: its failure must not surface
            log.warning("candidate for %s (%s) failed: %s", meta.request_id, variation, exc)
            return
        event = event_from_response(
            EventMeta(context.request_id, meta.tenant, candidate.model, meta.endpoint, False),
            candidate.body,
            body,
            None,
        )
        event.candidate_of = meta.event_id
        event.sampling = variation
        self.recorder.record(event)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def as_candidate(request: GuardedRequest, variation: dict[str, Any]) -> GuardedRequest:
    """The request (as the upstream saw it) again, with ``variation``: whole, one choice."""
    body = {key: value for key, value in request.body.items() if key != "stream_options"}
    body.update(variation, stream=False, n=1)
    return msgspec.structs.replace(request.with_body(body), stream=False, n=1, model=body["model"])
