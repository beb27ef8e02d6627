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

A window of a choice's content that draws ``revise`` pauses the stream (the upstream is closed at once
when the rule's fallback is ``block`` and no other choice still streams) while the answer so far is
revised (``gateway.guarded.stream_revision``). A revision that passes is sent in place of the rest, the
choice ends with ``finish_reason: stop``, and the upstream is closed once every choice has ended; a
revision that fails gets the rule's fallback, applied to the window, and the stream goes on if it can.

Rules whose guard only grades (a reward model) never judge windows: each choice's whole content, as the
client got it, is graded once when the choice ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec

from feedback.events import ChoiceReport, GuardrailsReport, RevisionReport, StageReport
from gateway.errors import GatewayError
from gateway.guarded.guardrails import Guardrails, Judged, ResolvedPolicy, fallback_actions
from gateway.guarded.revision import NOT_REVISED, Revised
from gateway.guarded.stream_channels import Channel
from gateway.guarded.stream_chunks import ChunkWriter
from gateway.guarded.stream_revision import StreamReviser, continuation
from gateway.guarded.text_slots import call_slots
from gateway.relay.read_ahead import ReadAhead
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
        self.revision: RevisionReport | None = None  # a ``revise`` rule fired: what came of it
        self.revised = False

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
        reviser: StreamReviser | None = None,
        choices: int = 1,
        stop_upstream: Callable[[], Awaitable[None]] | None = None,
        read_ahead: bool = True,
    ) -> None:
        self.guardrails = guardrails
        self.context = context
        self.resolved = resolved
        self.reviser = reviser  # None: a ``revise`` decision gets its rule's fallback
        self.expected = choices  # how many choices the stream carries (the request's ``n``)
        self.stop_upstream = stop_upstream
        self.stopping = False  # a revision stopped the upstream, or will once every choice has ended
        self.chat = text_field == "chat"
        policy = resolved.policy
        redacts = any(rule.action is Action.REDACT for rule in policy.output)
        self.buffer = policy.stream.mode is StreamMode.BUFFER or redacts
        self.report = GuardrailsReport(policy=resolved.name, output=[])
        # Rules that grade (a reward model) judge each choice's whole content once it has ended; the others
        # judge the windows and held tool calls.
        self.graded = [rule for rule in policy.output if guardrails.grading(rule)]
        self.windowed = [rule for rule in policy.output if not guardrails.grading(rule)]
        self._choices: dict[int, _Choice] = {}
        self.write = ChunkWriter(self.chat)
        self.read_ahead = read_ahead  # False: the upstream's stages keep state beside the chunks
        self.ahead: ReadAhead | None = None  # set by ``run`` in buffer mode
        self._deferred: set[int] = set()  # choices with text left unjudged while more was arriving

    async def run(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        # In buffer mode the upstream is read during each check; while the guards are busy, what arrived
        # meanwhile is judged as one larger window (up to ``max_chars``): under load, fewer, fuller checks.
        self.ahead = ReadAhead(chunks) if self.read_ahead and self.buffer and self.windowed else None
        try:
            async for out in self._guarded(self.ahead or chunks):
                yield out
        finally:
            if self.ahead is not None:
                await self.ahead.aclose()

    async def _guarded(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        held: list[Chunk] = []  # chunks with no choices (usage): they belong after every choice
        failure: GatewayError | None = None
        try:
            async for chunk in chunks:
                self.write.template = chunk
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
                if self._deferred and self.ahead is not None and not self.ahead.ready:
                    async for out in self._check_deferred():  # nothing more came: judge what did
                        yield out
                if self.stopping and self._all_done():
                    break
        except GatewayError as exc:  # the upstream failed: what arrived is still checked, then the error
            failure = exc
        if self.stopping:
            await self._stop()
        for state in self._choices.values():
            if not state.done:  # no finish_reason came: the tail is checked (and released if it passes)
                async for out in self._finish(state, None, announce=failure is None):
                    yield out
        if failure is not None:
            raise failure
        self.report.output = [self._choice_report(s) for s in sorted(self._choices.values(), key=_index)]
        # The report rides on the usage chunk when there is one: clients read usage from the last chunk.
        last = held.pop() if held else {**self.write.shell(), "choices": []}
        for chunk in held:
            yield chunk
        yield {**last, "guardrails": self.report}

    def _choice_report(self, state: _Choice) -> ChoiceReport:
        report = self.guardrails.stream_choice_report(state.index, state.reports)
        if state.revision is not None:
            report.revised = state.revised
            report.revision = state.revision
        return report

    def _all_done(self) -> bool:
        return len(self._choices) >= self.expected and all(s.done for s in self._choices.values())

    async def _stop(self) -> None:
        """Close the upstream (idempotent): nothing more of it will be read."""
        self.stopping = True
        if self.stop_upstream is not None:
            await self.stop_upstream()

    async def _on_choice(self, state: _Choice, choice: dict[str, Any]) -> AsyncIterator[Chunk]:
        texts, passthrough = self._split(state, choice)
        if passthrough:  # role (first chunk), and fields that carry no text
            yield self.write.chunk(state.index, passthrough)
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
        if not self.windowed:  # no rule judges windows: the text goes out as it comes
            channel.shown.append(text)
            yield self.write.text(state.index, channel.field, text, logprobs)
            return
        channel.cutter.append(text)
        if self.buffer:
            channel.logprobs.add(len(text), logprobs)
        if self._defers(channel):
            self._deferred.add(state.index)
        else:
            async for out in self._check_windows(state, channel):
                yield out
        if not self.buffer and not state.done:  # stream_first: out as soon as no window it closed failed
            channel.shown.append(text)
            yield self.write.text(state.index, channel.field, text, logprobs)

    def _defers(self, channel: Channel) -> bool:
        """Whether to wait for more text before judging: more is here already, a window has room, and the
        guards are busy with other checks (this one would queue). Unloaded, windows stay a sentence. The
        first window of a text is never deferred: the time to its first token comes first."""
        ahead = self.ahead
        return (
            ahead is not None
            and ahead.ready
            and bool(channel.shown)
            and channel.cutter.pending_chars < channel.cutter.max_chars
            and self.guardrails.busy
        )

    async def _check_windows(self, state: _Choice, channel: Channel) -> AsyncIterator[Chunk]:
        while not state.done and (window := channel.cutter.next_window()) is not None:
            async for out in self._check(state, channel, window):
                yield out

    async def _check_deferred(self) -> AsyncIterator[Chunk]:
        """The windows of the choices whose text was left unjudged (other choices' may have come since)."""
        deferred, self._deferred = sorted(self._deferred), set()
        for index in deferred:
            state = self._choices[index]
            if not state.done and state.current is not None:
                async for out in self._check_windows(state, state.current):
                    yield out

    async def _flush(self, state: _Choice, channel: Channel) -> AsyncIterator[Chunk]:
        while not state.done and (window := channel.cutter.next_window(final=True)) is not None:
            async for out in self._check(state, channel, window):
                yield out

    async def _check(self, state: _Choice, channel: Channel, window: Window) -> AsyncIterator[Chunk]:
        context = JudgeContext() if self.context is None else self.context
        focused = msgspec.structs.replace(  # shares the cache
            context, focus_start=len(window.context), patience_s=self._patience(channel, window)
        )
        where = f"choices[{state.index}]" + ("" if self._is_main(channel) else f".{channel.field}")
        judged = await self.guardrails.judge_output(
            self.resolved, [window.checked], [where], focused, self.windowed
        )
        if judged.report.decision == "revise":
            revised = await self._revise(state, channel, window, judged, where)
            if isinstance(revised, list):  # the revision went out: the choice has ended
                for out in revised:
                    yield out
                return
            judged = revised
        refusal = self._judged(state, judged)
        if refusal is not None:
            yield refusal
            return
        outcome = judged.outcome
        text = outcome.texts[0]
        state.annotate = state.annotate or text.annotate
        state.annotation = state.annotation or text.annotation
        if text.decision == "truncate":  # out goes what precedes the offending span; the choice ends
            cut = max(0, (text.truncated_at or 0) - len(window.context))
            if self.buffer and cut:  # what precedes the cut goes out with the other guards' redactions
                cut, kept_text, spans = _release(window, outcome, cut)
                logprobs = channel.logprobs.release(cut, spans)
                if kept_text:
                    yield self.write.text(state.index, channel.field, kept_text, logprobs)
            state.done = True
            yield self.write.refusal(state.index, "The rest of this answer was cut by the gateway's guards.")
            return
        release, released_text, spans = _release(window, outcome)
        channel.cutter.commit(window, release)
        if self.buffer:
            logprobs = channel.logprobs.release(release, spans)
            if released_text:
                channel.shown.append(released_text)
                yield self.write.text(state.index, channel.field, released_text, logprobs)

    def _patience(self, channel: Channel, window: Window) -> float:
        """How long this window's check may wait to share a model call with other streams' windows: only
        after the text's first window went out (its reader is reading that), only while nothing more of
        the answer has come (the guards are ahead of the upstream, so the wait costs the reader nothing
        it could read sooner), and never for the tail (the answer has ended: its client waits)."""
        if not channel.shown or window.final or self.ahead is None or self.ahead.ready:
            return 0.0
        return self.resolved.policy.stream.patience_ms / 1000

    async def _revise(
        self, state: _Choice, channel: Channel, window: Window, judged: Judged, where: str
    ) -> list[Chunk] | Judged:
        """A window drew ``revise``: the revision's chunks (the choice has ended), or the window judged
        with the rule's fallback (the report says why)."""
        fallback = fallback_actions(self.resolved, judged.report)
        if state.revision is not None:  # tried once already (a window's overlap repeats what fired)
            return self._fallen_back(judged, window, where)
        why_not = self._not_revisable(state, channel, where)
        if why_not is not None or self.reviser is None:
            state.revision = RevisionReport(rounds=[], fallback=fallback, reason=why_not or NOT_REVISED)
            return self._fallen_back(judged, window, where)
        others_done = all(s.done for s in self._choices.values() if s is not state)
        if fallback == "block" and others_done and len(self._choices) >= self.expected:
            await self._stop()  # nothing more of this answer can reach the client: stop the upstream now
        shown = "".join(channel.shown)
        _, held, _ = _release(window, judged.outcome, len(window.text))  # the withheld text, redacted
        revised, job = await self.reviser.revise(shown, held, judged.report, where)
        reason = revised if isinstance(revised, str) else None
        if isinstance(revised, Revised):
            rest = continuation(self.resolved, shown, revised)
            if rest is not None:
                state.reports.append(judged.report)
                state.revision, state.revised, state.done = job.report_of(), True, True
                channel.logprobs.discard()
                self.stopping = True  # the upstream's rest of this choice is not wanted
                await self._grade(state, shown + rest.text)
                note = rest.note or (self._note(state) if state.annotate else None)
                return self._continued(state.index, channel.field, rest.text, note, rest.finish_reason)
            reason = "the guards changed the revision in text the client already has"
        state.revision = job.report_of(fallback, reason)
        return self._fallen_back(judged, window, where)

    def _not_revisable(self, state: _Choice, channel: Channel, where: str) -> str | None:
        if not self._is_main(channel):
            return f"revise applies to an answer's text content only, and {where} failed"
        if state.tool_calls or state.function_call:
            return "a streamed choice is not revised once its tool calls have begun"
        if not self.buffer:
            return "revise needs the buffer stream mode"
        return None

    def _fallen_back(self, judged: Judged, window: Window, where: str) -> Judged:
        return self.guardrails.with_fallback(self.resolved, judged, [window.checked], [where])

    def _continued(self, index: int, field: str, text: str, note: str | None, finish: str) -> list[Chunk]:
        out = [self.write.text(index, field, part) for part in (text, note) if part]
        return [*out, self.write.finish(index, finish)]

    def _judged(self, state: _Choice, judged: Judged) -> Chunk | None:
        """Keep a check's report; a block ends the choice with a refusal chunk (returned)."""
        state.reports.append(judged.report)
        blocked = judged.outcome.blocked
        if blocked is None:
            return None
        state.done = True
        return self.write.refusal(state.index, self.guardrails.refusal(self.resolved, blocked))

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
        main = next((c for c in state.channels.values() if self._is_main(c)), None)
        await self._grade(state, "".join(main.shown) if main is not None else "")
        if state.annotate:
            yield self.write.text(state.index, "content" if self.chat else "text", self._note(state))
        state.done = True
        if announce:
            yield self.write.finish(state.index, finish_reason)

    async def _grade(self, state: _Choice, answer: str) -> None:
        """The grading rules (a reward model) on a choice's whole content as the client got it: their
        report joins the choice's, and an ``annotate`` they draw ends the answer with its note."""
        if not self.graded or not answer:
            return
        wheres, context = [f"choices[{state.index}]"], self.context
        judged = await self.guardrails.judge_output(self.resolved, [answer], wheres, context, self.graded)
        state.reports.append(judged.report)
        text = judged.outcome.texts[0]
        state.annotate = state.annotate or text.annotate
        state.annotation = state.annotation or text.annotation

    def _note(self, state: _Choice) -> str:
        return state.annotation or self.resolved.policy.disclaimer

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
        judged = await self.guardrails.judge_output(self.resolved, texts, wheres, self.context, self.windowed)
        if judged.report.decision == "revise":  # a revision replaces text content, never a call
            failed = [w for w, t in zip(wheres, judged.outcome.texts, strict=True) if t.decision == "revise"]
            reason = f"revise applies to an answer's text content only, and {failed[0]} failed"
            fallback = fallback_actions(self.resolved, judged.report)
            state.revision = RevisionReport(rounds=[], fallback=fallback, reason=reason)
            judged = self.guardrails.with_fallback(self.resolved, judged, texts, wheres)
        refusal = self._judged(state, judged)
        if refusal is not None:
            yield refusal
            return
        for slot, text in zip(slots, judged.outcome.texts, strict=True):
            if text.text != slot.text:
                slot.write(text.text)
        delta: dict[str, Any] = {}
        if calls:
            delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(calls)]
        if state.function_call is not None:
            delta["function_call"] = state.function_call
        yield self.write.chunk(state.index, delta)


def _index(state: _Choice) -> int:
    return state.index


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
