"""Output guards on a stream of chunks: one more stage in the relay (see ``gateway.streaming``).

Each choice's text is cut into windows (``guards.windows``). In ``buffer`` mode no character reaches
the client before the window holding it passed; in ``stream_first`` mode text goes out at once and a
violation ends the choice within one window (a policy that redacts on output always buffers, since
released text cannot be redacted). Tool-call arguments are held and checked whole when the choice
finishes. The tail is always checked. A block ends the choice with ``finish_reason: content_filter``
and a ``refusal``; the ``guardrails`` report comes in a last chunk with no choices.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from gateway.errors import GatewayError
from gateway.guardrails import Guardrails, ResolvedPolicy, stage_report
from gateway.streaming import Chunk
from guards.pipeline import StageOutcome, most_severe
from guards.policy import Action, StreamMode
from guards.redaction import apply_spans
from guards.verdict import JudgeContext, Span, Stage
from guards.windows import Window, WindowCutter


class _Choice:
    def __init__(self, index: int, resolved: ResolvedPolicy) -> None:
        stream = resolved.policy.stream
        self.index = index
        self.cutter = WindowCutter(stream.min_chars, stream.max_chars, stream.overlap_chars)
        self.done = False
        self.annotate = False
        self.annotation: str | None = None
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.reports: list[dict[str, Any]] = []


class StreamGuard:
    """Guards one response stream; ``text_field`` is ``"chat"`` (``delta.content``) or ``"text"``."""

    def __init__(
        self,
        guardrails: Guardrails,
        resolved: ResolvedPolicy,
        text_field: str,
        context: JudgeContext | None = None,
    ) -> None:
        self.guardrails = guardrails
        self.context = context
        self.resolved = resolved
        self.chat = text_field == "chat"
        policy = resolved.policy
        redacts = any(rule.action is Action.REDACT for rule in policy.output)
        self.buffer = policy.stream.mode is StreamMode.BUFFER or redacts
        self.report: dict[str, Any] = {"policy": resolved.name, "output": []}
        self._choices: dict[int, _Choice] = {}
        self._template: Chunk = {}

    async def run(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        held: list[Chunk] = []  # chunks with no choices (usage): they belong after every choice
        failure: GatewayError | None = None
        try:
            async for chunk in chunks:
                self._template = chunk
                choices = chunk.get("choices") or []
                if not choices:
                    held.append(chunk)
                    continue
                for choice in choices:
                    index = choice.get("index", 0)
                    state = self._choices.setdefault(index, _Choice(index, self.resolved))
                    if not state.done:
                        async for out in self._on_choice(state, choice):
                            yield out
        except GatewayError as exc:  # the upstream failed: what arrived is still checked, then the error
            failure = exc
        for state in self._choices.values():
            if not state.done:  # no finish_reason came: the tail is checked (and released if it passes)
                async for out in self._finish(state, None, announce=failure is None):
                    yield out
        if failure is not None:
            raise failure
        self.report["output"] = [
            self._choice_report(s) for s in sorted(self._choices.values(), key=lambda s: s.index)
        ]
        # The report rides on the usage chunk when there is one: clients read usage from the last chunk.
        last = held.pop() if held else {**self._shell(), "choices": []}
        for chunk in held:
            yield chunk
        yield {**last, "guardrails": self.report}

    async def _on_choice(self, state: _Choice, choice: dict[str, Any]) -> AsyncIterator[Chunk]:
        delta = choice.get("delta") or {}
        text = delta.get("content") if self.chat else choice.get("text")
        for call in delta.get("tool_calls") or ():
            self._hold_tool_call(state, call)
        passthrough = {k: v for k, v in delta.items() if k not in ("content", "tool_calls")}
        if self.chat and passthrough:  # role (first chunk), or a refusal the upstream itself sent
            yield self._chunk(state.index, passthrough)
        if text:
            state.cutter.append(text)
            while not state.done and (window := state.cutter.next_window()) is not None:
                async for out in self._check(state, window):
                    yield out
            if not self.buffer and not state.done:  # stream_first: out as soon as no window it closed failed
                yield self._text_chunk(state.index, text)
        if choice.get("finish_reason") is not None and not state.done:
            async for out in self._finish(state, choice["finish_reason"]):
                yield out

    async def _check(self, state: _Choice, window: Window) -> AsyncIterator[Chunk]:
        context = JudgeContext() if self.context is None else self.context
        focused = msgspec.structs.replace(context, focus_start=len(window.context))  # shares the cache
        outcome = await self.guardrails.engine.run(
            Stage.OUTPUT, self.resolved.policy.output, [window.checked], focused
        )
        state.reports.append(stage_report(outcome, [f"choices[{state.index}]"]))
        blocked = outcome.blocked
        if blocked is not None:
            state.done = True
            yield self._refusal(state.index, self.guardrails.refusal(self.resolved, blocked))
            return
        judged = outcome.texts[0]
        state.annotate = state.annotate or judged.annotate
        state.annotation = state.annotation or judged.annotation
        if judged.decision == "truncate":  # out goes what precedes the offending span; the choice ends
            cut = max(0, (judged.truncated_at or 0) - len(window.context))
            if self.buffer and cut:
                yield self._text_chunk(state.index, window.text[:cut])
            state.done = True
            yield self._refusal(state.index, "The rest of this answer was cut by the gateway's guards.")
            return
        release, released_text = _release(window, outcome)
        state.cutter.commit(window, release)
        if self.buffer and released_text:
            yield self._text_chunk(state.index, released_text)

    async def _finish(
        self, state: _Choice, finish_reason: str | None, announce: bool = True
    ) -> AsyncIterator[Chunk]:
        while not state.done and (window := state.cutter.next_window(final=True)) is not None:
            async for out in self._check(state, window):
                yield out
        if state.done:
            return
        if state.tool_calls:
            async for out in self._check_tool_calls(state):
                yield out
            if state.done:
                return
        if state.annotate:
            yield self._text_chunk(state.index, state.annotation or self.resolved.policy.disclaimer)
        state.done = True
        if announce:
            choice = {"index": state.index, "delta": {}, "finish_reason": finish_reason}
            yield {**self._shell(), "choices": [choice]}

    def _hold_tool_call(self, state: _Choice, call: dict[str, Any]) -> None:
        held = state.tool_calls.setdefault(call.get("index", 0), {"function": {"arguments": ""}})
        for key in ("id", "type"):
            if call.get(key):
                held[key] = call[key]
        function = call.get("function") or {}
        if function.get("name"):
            held["function"]["name"] = function["name"]
        held["function"]["arguments"] += function.get("arguments") or ""

    async def _check_tool_calls(self, state: _Choice) -> AsyncIterator[Chunk]:
        calls = [state.tool_calls[k] for k in sorted(state.tool_calls)]
        outcome = await self.guardrails.engine.run(
            Stage.OUTPUT,
            self.resolved.policy.output,
            [c["function"]["arguments"] for c in calls],
            self.context,
        )
        wheres = [f"choices[{state.index}].tool_calls[{i}]" for i in range(len(calls))]
        state.reports.append(stage_report(outcome, wheres))
        blocked = outcome.blocked
        if blocked is not None:
            state.done = True
            yield self._refusal(state.index, self.guardrails.refusal(self.resolved, blocked))
            return
        for call, text in zip(calls, outcome.texts, strict=True):
            call["function"]["arguments"] = text.text
        yield self._chunk(state.index, {"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})

    def _choice_report(self, state: _Choice) -> dict[str, Any]:
        by_guard: dict[str, dict[str, Any]] = {}
        for report in state.reports:
            for guard in report["guards"]:
                merged = by_guard.setdefault(
                    guard["guard"],
                    {
                        **guard,
                        "decision": "pass",
                        "categories": [],
                        "scores": {},
                        "spans": [],
                        "latency_ms": 0.0,
                    },
                )
                merged["decision"] = most_severe([merged["decision"], guard["decision"]])
                merged["categories"] = sorted(set(merged["categories"]) | set(guard["categories"]))
                for category, score in guard["scores"].items():
                    merged["scores"][category] = max(score, merged["scores"].get(category, 0.0))
                merged["spans"] += guard["spans"]
                merged["latency_ms"] = round(merged["latency_ms"] + guard["latency_ms"], 2)
                merged["error"] = merged.get("error") or guard["error"]
        decision = most_severe([r["decision"] for r in state.reports])
        return {
            "index": state.index,
            "decision": decision,
            "windows": len(state.reports),
            "guards": list(by_guard.values()),
        }

    def _shell(self) -> Chunk:
        return {
            key: self._template[key] for key in ("id", "object", "created", "model") if key in self._template
        }

    def _chunk(self, index: int, delta: dict[str, Any]) -> Chunk:
        if not self.chat:
            return {
                **self._shell(),
                "choices": [{"index": index, "text": delta.get("content", ""), "finish_reason": None}],
            }
        return {**self._shell(), "choices": [{"index": index, "delta": delta, "finish_reason": None}]}

    def _text_chunk(self, index: int, text: str) -> Chunk:
        return self._chunk(index, {"content": text})

    def _refusal(self, index: int, refusal: str) -> Chunk:
        if self.chat:
            choice = {"index": index, "delta": {"refusal": refusal}, "finish_reason": "content_filter"}
        else:
            choice = {"index": index, "text": "", "finish_reason": "content_filter"}
        return {**self._shell(), "choices": [choice]}


def _release(window: Window, outcome: StageOutcome) -> tuple[int, str]:
    """How much of the window goes out, and as what text, once it passed.

    Redaction spans are relative to ``context + text``. A span that straddles the release point is
    held back whole for the next window (or, starting at 0, released whole, redacted).
    """
    offset = len(window.context)
    spans = [
        Span(max(0, s.start - offset), s.end - offset, s.label, s.score, s.replacement)
        for s in outcome.redaction_spans(0)
        if s.end > offset
    ]
    release = window.release
    for span in sorted(spans, key=lambda s: s.start):
        if span.start < release < span.end:
            release = span.start if span.start > 0 else span.end
    released = window.text[:release]
    return release, apply_spans(released, [s for s in spans if s.end <= release])
