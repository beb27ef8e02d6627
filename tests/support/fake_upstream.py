"""A fake OpenAI-compatible upstream for unit tests, behind httpx.MockTransport (no sockets).

Its behaviour is chosen by the request's model name, so one fake serves every case.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx

# Critic models (the ``revise`` action): "critic" answers from ``FakeUpstream.critic_replies`` in order (then
# a polite default), "slow-critic" the same after ``critic_delay_s``, "echo-critic" repeats the answer it
# was asked about (a critic that changes nothing).
CRITICS = ("critic", "slow-critic", "echo-critic")
DEFAULT_CRITIQUE = "The answer insults the reader; harmless-language asks for polite words."
DEFAULT_REVISION = "Here is a polite answer."
ANSWER = re.compile(
    r"\n\n(?:Answer|Rest of the answer):\n(.*?)\n\n(?:Automatic checks found|Critique):", re.S
)

# "thinker" answers with the user's text as its reasoning (``reasoning_content``) and a fixed content;
# "tool-echo" with the user's text as the arguments of a tool call. Both stream when asked to.
THINKER_ANSWER = "The answer is 4."
# Best-of-n: "scripted" answers each choice with the next text of ``FakeUpstream.script`` (round and
# round), honouring n; "scripted-no-n" ignores n (one choice a call), "scripted-flaky" too, and its
# second call answers 503.
SCRIPTED = ("scripted", "scripted-no-n", "scripted-flaky")
MODELS = ["fake-model", "fake-no-n", "plain-503", "enveloped-429", "broken-stream", "unterminated-stream",
          "unreachable", "timeout", "llama-like", "echo", "thinker", "tool-echo", *CRITICS,
          *SCRIPTED]  # fmt: skip


def completion(text: str, index: int = 0, model: str = "fake-model") -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def chunk(delta: dict[str, Any], index: int = 0, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "fake-model",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def text_chunk(text: str, index: int, finish: str | None) -> dict[str, Any]:
    choice = {"index": index, "text": text, "finish_reason": finish}
    return {"id": "cmpl-echo", "object": "text_completion", "model": "echo", "choices": [choice]}


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


class ClosingStream(httpx.AsyncByteStream):
    """A streamed body whose generator ends when the client closes the response, as a socket would
    (httpx's own stream for a generator ignores ``aclose``)."""

    def __init__(self, frames: AsyncIterator[bytes]) -> None:
        self.frames = frames

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for frame in self.frames:
            yield frame

    async def aclose(self) -> None:
        aclose = getattr(self.frames, "aclose", None)
        if aclose is not None:
            await aclose()


class FakeUpstream:
    """Records what it received; answers by model name."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []
        self.stream_closed = False
        self.critic_replies: list[str] = []
        self.critic_delay_s = 5.0
        self.closed_before_critic: list[bool] = []  # per critic call: had the answer's stream closed?
        self.script: list[str] = ["Hello from the script."]
        self.scripted_served = 0  # texts of ``script`` given so far
        self.scripted_calls = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "GET" and request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": m} for m in MODELS]})
        body = json.loads(await request.aread())
        self.bodies.append(body)
        model = body.get("model")
        if model == "unreachable":
            raise httpx.ConnectError("connection refused", request=request)
        if model == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if model == "plain-503":
            return httpx.Response(503, text="upstream overloaded, try later")
        if model == "enveloped-429":
            error = {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit"}
            return httpx.Response(429, json={"error": error})
        if request.url.path.endswith("/embeddings"):
            return httpx.Response(
                200, json={"object": "list", "data": [{"embedding": [0.1, 0.2], "index": 0}]}
            )
        if model == "echo":
            return self._echo(body)
        if model in ("thinker", "tool-echo"):
            return self._delta_answer(model, body)
        if model in CRITICS:
            return await self._critic(model, body)
        if model in SCRIPTED:
            return self._scripted(model, body)
        if body.get("stream"):
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=self._stream(model, body)
            )
        n = body.get("n") or 1
        if model in ("fake-no-n", "llama-like"):
            return httpx.Response(200, json=completion("only one", model=model))
        answer = completion("Hello from the fake.", model=model)
        answer["choices"] = [{**answer["choices"][0], "index": i} for i in range(n)]
        return httpx.Response(200, json=answer)

    async def _critic(self, model: str, body: dict[str, Any]) -> httpx.Response:
        self.closed_before_critic.append(self.stream_closed)
        if model == "slow-critic":
            await asyncio.sleep(self.critic_delay_s)
        asked = body["messages"][-1]["content"]
        reviewing = body["messages"][0]["content"].startswith("You review")
        if model == "echo-critic":
            found = ANSWER.search(asked)
            text = found.group(1) if found else asked
        elif self.critic_replies:
            text = self.critic_replies.pop(0)
        else:
            text = DEFAULT_CRITIQUE if reviewing else DEFAULT_REVISION
        return httpx.Response(200, json=completion(text, model=model))

    def _scripted(self, model: str, body: dict[str, Any]) -> httpx.Response:
        self.scripted_calls += 1
        if model == "scripted-flaky" and self.scripted_calls == 2:
            return httpx.Response(503, text="upstream overloaded, try later")
        n = (body.get("n") or 1) if model == "scripted" else 1
        answer = completion("", model=model)
        choices = []
        for index in range(n):
            text = self.script[self.scripted_served % len(self.script)]
            self.scripted_served += 1
            message = {"role": "assistant", "content": text}
            choices.append({**answer["choices"][0], "index": index, "message": message})
        answer["choices"] = choices
        answer["usage"] = {"prompt_tokens": 5, "completion_tokens": 3 * n, "total_tokens": 5 + 3 * n}
        return httpx.Response(200, json=answer)

    def _echo(self, body: dict[str, Any]) -> httpx.Response:
        """Answers with the last message's text (chat) or the prompt (legacy), n times; streamed in
        three-character chunks, so guards see words split across chunks. A text with ``||`` in it gives
        each choice its own part (choice i answers part i), so choices can differ."""
        chat = "messages" in body
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        n = body.get("n") or 1
        parts = prompt.split("||")
        texts = [parts[i % len(parts)] for i in range(n)]
        if not body.get("stream"):
            if chat:
                answer = completion("", model="echo")
                answer["choices"] = [
                    {**answer["choices"][0], "index": i, "message": {"role": "assistant", "content": t}}
                    for i, t in enumerate(texts)
                ]
            else:
                choices = [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)]
                answer = {"id": "cmpl-echo", "object": "text_completion", "model": "echo", "choices": choices}
            return httpx.Response(200, json=answer)

        async def frames() -> AsyncIterator[bytes]:
            try:
                for i in range(n):
                    if chat:
                        yield sse(chunk({"role": "assistant"}, index=i))
                for start in range(0, max(map(len, texts)), 3):
                    for i in range(n):
                        piece = texts[i][start : start + 3]
                        if not piece:
                            continue
                        if chat:
                            yield sse(chunk({"content": piece}, index=i))
                        else:
                            yield sse(text_chunk(piece, i, None))
                for i in range(n):
                    if chat:
                        yield sse(chunk({}, index=i, finish="stop"))
                    else:
                        yield sse(text_chunk("", i, "stop"))
                yield sse("[DONE]")
            finally:
                self.stream_closed = True

        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, stream=ClosingStream(frames()))

    def _delta_answer(self, model: str, body: dict[str, Any]) -> httpx.Response:
        """ "thinker": the user's text as reasoning, then a fixed answer; "tool-echo": the user's text as a
        tool call's arguments. Streamed in one chunk per field when asked."""
        said = body["messages"][-1]["content"]
        if model == "thinker":
            message: dict[str, Any] = {"reasoning_content": said, "content": THINKER_ANSWER}
            finish = "stop"
        else:
            call = {"id": "call_1", "type": "function", "function": {"name": "say", "arguments": said}}
            message, finish = {"content": None, "tool_calls": [call]}, "tool_calls"
        if not body.get("stream"):
            answer = completion("", model=model)
            answer["choices"][0].update(message={"role": "assistant", **message}, finish_reason=finish)
            return httpx.Response(200, json=answer)
        deltas = [{"role": "assistant"}]
        if model == "thinker":
            deltas += [{"reasoning_content": said}, {"content": THINKER_ANSWER}]
        else:
            deltas.append({"tool_calls": [{"index": 0, **message["tool_calls"][0]}]})
        frames = [sse(chunk(d)) for d in deltas] + [sse(chunk({}, finish=finish)), sse("[DONE]")]
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(frames))

    async def _stream(self, model: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        try:
            yield sse(chunk({"role": "assistant"}))
            for word in ["Hello", " from", " the", " fake."]:
                yield sse(chunk({"content": word}))
            if model == "broken-stream":
                raise httpx.ReadError("connection reset by peer")
            if model == "unterminated-stream":
                return
            yield sse(chunk({}, finish="stop"))
            if (body.get("stream_options") or {}).get("include_usage") and model != "llama-like":
                usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
                yield sse({**chunk({}), "choices": [], "usage": usage})
            yield sse("[DONE]")
        finally:
            self.stream_closed = True
