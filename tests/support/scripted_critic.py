"""An OpenAI-compatible server that plays both the answering model and the critic, by script: it tells the
calls apart by their system message (feedback.constitution's critique and revision messages, the
ranking's), so `hhh feedback constitute` can be tested call by call. As an httpx transport, or on a real
socket for the command line.

- answer: "Honestly, that is a stupid question. <the prompt>" (rude on purpose)
- critique: "It calls the question stupid."
- revision: "Revised answer: Happy to help with: <the prompt>" (the preamble is for revision_text)
- ranking: the letter of the revision, "B" when it is second; with ``logprobs`` asked, top log
  probabilities of 0.8 for that letter and 0.2 for the other (or none at all: ``logprobs=False``)
- a prompt holding "FAIL" gets HTTP 500 for its answer; ``hang_after`` answers, every later answer hangs
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

RUDE = "Honestly, that is a stupid question. "
KIND = "Happy to help with: "


class Script:
    def __init__(self, *, logprobs: bool = True, hang_after: int | None = None) -> None:
        self.logprobs = logprobs
        self.hang_after = hang_after
        self.answers = 0
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """(status, JSON) for one call; None: hang."""
        with self._lock:
            self.calls.append(body)
        messages = body["messages"]
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        last = str(messages[-1]["content"])
        if system.startswith("You review"):
            return 200, _completion("It calls the question stupid.")
        if system.startswith("You rewrite"):
            prompt = last.split("Request:\n", 1)[1].split("\n\nAnswer:\n", 1)[0]
            return 200, _completion(f"Revised answer: {KIND}{prompt}")
        if system.startswith("You compare"):
            return 200, self._ranking(body, last)
        with self._lock:
            self.answers += 1
            if self.hang_after is not None and self.answers > self.hang_after:
                return None
        if "FAIL" in last:
            return 500, {"error": {"message": "scripted failure", "type": "server_error", "code": "boom"}}
        return 200, _completion(RUDE + last)

    def _ranking(self, body: dict[str, Any], asked: str) -> dict[str, Any]:
        second = asked.split("Answer B:\n", 1)[1]
        letter, other = ("B", "A") if second.startswith(KIND) else ("A", "B")
        reply = _completion(letter)
        if self.logprobs and body.get("logprobs"):
            top = [
                {"token": letter, "logprob": math.log(0.8)},
                {"token": f" {other}", "logprob": math.log(0.2)},
            ]
            reply["choices"][0]["logprobs"] = {"content": [{"token": letter, "logprob": math.log(0.8),
                                                             "top_logprobs": top}]}  # fmt: skip
        return reply


def _completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 1, "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
    }  # fmt: skip


def scripted_transport(script: Script) -> httpx.MockTransport:
    async def handle(request: httpx.Request) -> httpx.Response:
        import asyncio

        answered = script.reply(json.loads(await request.aread()))
        if answered is None:
            await asyncio.Event().wait()  # hangs until cancelled
            raise AssertionError("unreachable")
        status, body = answered
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handle)


@contextmanager
def scripted_server(script: Script) -> Iterator[str]:
    """The script on a real socket; yields its /v1 URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            answered = script.reply(body)
            status, payload = answered if answered is not None else (504, {"error": {"message": "hung"}})
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
