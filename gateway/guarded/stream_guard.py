"""Output guards on a stream of chunks: one more stage in the relay (see ``gateway.relay.streaming``).

Each choice's text is cut into windows (``guards.windows``). In ``buffer`` mode no character reaches
the client before the window holding it passed; in ``stream_first`` mode text goes out at once and a
violation ends the choice within one window (a policy that redacts on output always buffers, since
released text cannot be redacted). Every text of a choice is guarded so: ``content``, an upstream's own
``refusal``, reasoning (``reasoning_content``, ``reasoning``), each in its own windows (see
``gateway.guarded.stream_channels``); when one ends and the next begins, the first one's tail is checked and
released first, so they arrive in order. Tool calls and a legacy ``function_call`` are held and checked
whole when the choice finishes. The tail is always checked. A block in any of them ends the choice with
``finish_reason: content_filter`` and a ``refusal``; the ``guardrails`` report comes in a last chunk with
no choices. Logprobs travel with the text they belong to: in ``buffer`` mode they are held and released
with it, and dropped with text that is redacted or withheld.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from feedback.events import GuardrailsReport, StageReport
from gateway.errors import GatewayError
from gateway.guarded.guardrails import Guardrails, ResolvedPolicy
from gateway.guarded.stream_channels import Channel
from gateway.guarded.text_slots import call_slots
from gateway.relay.streaming import Chunk
from guards.pipeline import StageOutcome
from guards.policy import Action, StreamMode
from guards.redaction import apply_spans, merge_overlapping
from guards.verdict import JudgeContext, Span
from guards.windows import Window

# Delta fields held whole until the choice finishes (checked then), rather than cut into windows.
_HELD = frozenset({"tool_calls", "function_call"})


class _Choice:
    def __init__(self, index: int, resolved: ResolvedPolicy) -> None:
        self.index = index
        self.stream = resolved.policy.stream
        self.channels: dict[str, Channel] = {}
        self.current: Channel | None = None  # the text now arriving
        self.done = False
        self.annotate = False
        self.annotation: str | None = None
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, Any] | None = None
        self.reports: list[StageReport] = []  # one per window, and one for held tool calls

    def channel(self, field: str) -> Channel:
        if field not in self.channels:
            self.channels[field] = Channel(field, self.stream)
        return self.channels[field]


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
        self.report = GuardrailsReport(policy=resolved.name, output=[])
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
        self.report.output = [
            self.guardrails.stream_fallback_report(
                self.resolved, self.guardrails.stream_choice_report(s.index, s.reports)
            )
            for s in sorted(self._choices.values(), key=lambda s: s.index)
        ]
        # The report rides on the usage chunk when there is one: clients read usage from the last chunk.
        last = held.pop() if held else {**self._shell(), "choices": []}
        for chunk in held:
            yield chunk
        yield {**last, "guardrails": self.report}

    async def _on_choice(self, state: _Choice, choice: dict[str, Any]) -> AsyncIterator[Chunk]:
        texts, passthrough = self._split(state, choice)
        if passthrough:  # role (first chunk), and fields that carry no text
            yield self._chunk(state.index, passthrough)
        # Logprobs cover the chunk's text: kept only where that is one text, so they can follow it.
        logprobs = choice.get("logprobs") if len(texts) == 1 else None
        for field, text in texts.items():
            async for out in self._on_text(state, state.channel(field), text, logprobs):
                yield out
        if choice.get("finish_reason") is not None and not state.done:
            async for out in self._finish(state, choice["finish_reason"]):
                yield out

    def _split(self, state: _Choice, choice: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
        """A chunk's texts to guard (field → text), and what passes as it is. Every string of a delta
        but ``role`` is text a client shows: content, refusal, reasoning, whatever an upstream calls it."""
        if not self.chat:
            text = choice.get("text")
            return ({"text": text} if isinstance(text, str) and text else {}), {}
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return {}, {}
        for call in delta.get("tool_calls") or ():
            self._hold_tool_call(state, call)
        if isinstance(delta.get("function_call"), dict):
            self._hold_function_call(state, delta["function_call"])
        texts = {k: v for k, v in delta.items() if k != "role" and isinstance(v, str) and v}
        passthrough = {
            k: v
            for k, v in delta.items()
            if v is not None and (k == "role" or (k not in _HELD and not isinstance(v, str)))
        }
        return texts, passthrough

    async def _on_text(
        self, state: _Choice, channel: Channel, text: str, logprobs: dict[str, Any] | None
    ) -> AsyncIterator[Chunk]:
        if state.current is not None and state.current is not channel:  # one text ended, the next began
            async for out in self._flush(state, state.current):
                yield out
        state.current = channel
        channel.cutter.append(text)
        if self.buffer:
            channel.logprobs.add(len(text), logprobs)
        while not state.done and (window := channel.cutter.next_window()) is not None:
            async for out in self._check(state, channel, window):
                yield out
        if not self.buffer and not state.done:  # stream_first: out as soon as no window it closed failed
            yield self._text_chunk(state.index, channel.field, text, logprobs)

    async def _flush(self, state: _Choice, channel: Channel) -> AsyncIterator[Chunk]:
        while not state.done and (window := channel.cutter.next_window(final=True)) is not None:
            async for out in self._check(state, channel, window):
                yield out

    async def _check(self, state: _Choice, channel: Channel, window: Window) -> AsyncIterator[Chunk]:
        context = JudgeContext() if self.context is None else self.context
        focused = msgspec.structs.replace(context, focus_start=len(window.context))  # shares the cache
        where = f"choices[{state.index}]" + ("" if self._is_main(channel) else f".{channel.field}")
        outcome, refusal = await self._judge(state, [window.checked], [where], focused)
        if refusal is not None:
            yield refusal
            return
        judged = outcome.texts[0]
        state.annotate = state.annotate or judged.annotate
        state.annotation = state.annotation or judged.annotation
        if judged.decision == "truncate":  # out goes what precedes the offending span; the choice ends
            cut = max(0, (judged.truncated_at or 0) - len(window.context))
            if self.buffer and cut:  # what precedes the cut goes out with the other guards' redactions
                cut, kept_text, spans = _release(window, outcome, cut)
                logprobs = channel.logprobs.release(cut, spans)
                if kept_text:
                    yield self._text_chunk(state.index, channel.field, kept_text, logprobs)
            state.done = True
            yield self._refusal(state.index, "The rest of this answer was cut by the gateway's guards.")
            return
        release, released_text, spans = _release(window, outcome)
        channel.cutter.commit(window, release)
        if self.buffer:
            logprobs = channel.logprobs.release(release, spans)
            if released_text:
                yield self._text_chunk(state.index, channel.field, released_text, logprobs)

    async def _judge(
        self, state: _Choice, texts: list[str], wheres: list[str], context: JudgeContext | None
    ) -> tuple[StageOutcome, Chunk | None]:
        """Judge some of a choice's text, keep the report; a block ends the choice with a refusal chunk."""
        checked = await self.guardrails.judge_output(self.resolved, texts, wheres, context)
        state.reports.append(checked.report)
        blocked = checked.outcome.blocked
        if blocked is None:
            return checked.outcome, None
        state.done = True
        return checked.outcome, self._refusal(state.index, self.guardrails.refusal(self.resolved, blocked))

    def _is_main(self, channel: Channel) -> bool:
        return channel.field in ("content", "text")

    async def _finish(
        self, state: _Choice, finish_reason: str | None, announce: bool = True
    ) -> AsyncIterator[Chunk]:
        for channel in [c for c in state.channels.values() if c is not state.current] + [state.current]:
            if channel is not None:
                async for out in self._flush(state, channel):
                    yield out
        if state.done:
            return
        if state.tool_calls or state.function_call:
            async for out in self._check_calls(state):
                yield out
            if state.done:
                return
        if state.annotate:
            note = state.annotation or self.resolved.policy.disclaimer
            yield self._text_chunk(state.index, "content" if self.chat else "text", note)
        state.done = True
        if announce:
            finish = self._chunk(state.index, {})
            finish["choices"][0]["finish_reason"] = finish_reason
            yield finish

    def _hold_tool_call(self, state: _Choice, call: dict[str, Any]) -> None:
        held = state.tool_calls.setdefault(call.get("index", 0), {"function": {"arguments": ""}})
        for key in ("id", "type"):
            if call.get(key):
                held[key] = call[key]
        function = call.get("function") or {}
        if function.get("name"):
            held["function"]["name"] = function["name"]
        held["function"]["arguments"] += function.get("arguments") or ""

    def _hold_function_call(self, state: _Choice, call: dict[str, Any]) -> None:
        held = state.function_call = state.function_call or {"arguments": ""}
        if call.get("name"):
            held["name"] = call["name"]
        held["arguments"] += call.get("arguments") or ""

    async def _check_calls(self, state: _Choice) -> AsyncIterator[Chunk]:
        """Tool calls and a legacy function call, checked whole: arguments and names."""
        calls = [state.tool_calls[k] for k in sorted(state.tool_calls)]
        held: dict[str, Any] = {"tool_calls": calls, "function_call": state.function_call}
        slots = call_slots(held, f"choices[{state.index}]")
        texts, wheres = [slot.text for slot in slots], [slot.where for slot in slots]
        outcome, refusal = await self._judge(state, texts, wheres, self.context)
        if refusal is not None:
            yield refusal
            return
        for slot, text in zip(slots, outcome.texts, strict=True):
            if text.text != slot.text:
                slot.write(text.text)
        delta: dict[str, Any] = {}
        if calls:
            delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(calls)]
        if state.function_call is not None:
            delta["function_call"] = state.function_call
        yield self._chunk(state.index, delta)

    def _shell(self) -> Chunk:
        return {
            key: self._template[key] for key in ("id", "object", "created", "model") if key in self._template
        }

    def _chunk(self, index: int, delta: dict[str, Any], logprobs: dict[str, Any] | None = None) -> Chunk:
        choice: dict[str, Any] = {"index": index}
        if self.chat:
            choice["delta"] = delta
        else:
            choice["text"] = delta.get("text", "")
        if logprobs is not None:
            choice["logprobs"] = logprobs
        choice["finish_reason"] = None
        return {**self._shell(), "choices": [choice]}

    def _text_chunk(self, index: int, field: str, text: str, logprobs: dict[str, Any] | None = None) -> Chunk:
        return self._chunk(index, {field: text}, logprobs)

    def _refusal(self, index: int, refusal: str) -> Chunk:
        if self.chat:
            choice = {"index": index, "delta": {"refusal": refusal}, "finish_reason": "content_filter"}
        else:
            choice = {"index": index, "text": "", "finish_reason": "content_filter"}
        return {**self._shell(), "choices": [choice]}


def _release(window: Window, outcome: StageOutcome, cut: int | None = None) -> tuple[int, str, list[Span]]:
    """How much of the window goes out, as what text, and the redactions in it (relative to it).

    Redaction spans are relative to ``context + text``. A span that straddles the release point is
    held back whole for the next window (or, starting at 0, released whole, redacted). With ``cut`` (a
    truncation), nothing at or after it goes out, and a span straddling it is held back whole.
    """
    offset = len(window.context)
    spans = [
        Span(max(0, s.start - offset), s.end - offset, s.label, s.score, s.replacement)
        for s in outcome.redaction_spans(0)
        if s.end > offset
    ]
    release = window.release if cut is None else cut
    for span in sorted(spans, key=lambda s: s.start):
        if span.start < release < span.end:
            release = span.start if span.start > 0 or cut is not None else span.end
    released = window.text[:release]
    applied = merge_overlapping(s for s in spans if s.end <= release and s.replacement is not None)
    return release, apply_spans(released, applied), applied
