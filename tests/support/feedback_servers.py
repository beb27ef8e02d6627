"""Upstreams and processes for the feedback loop's security tests: an upstream whose n choices differ (so
a preference between them makes a pair), a socket-level upstream that streams slowly and never ends, and
the gateway as a subprocess the test can signal."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from gateway.relay.embedded_llm import free_port
from tests.support.servers import wait_until_up

SLOW_MODEL = "slow-forever"
# Streams FINITE_TOKENS tokens, a token every 0.1 s, then ends: a stream well inside a shutdown's grace.
FINITE_MODEL = "slow-finite"
FINITE_TOKENS = 30


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    prompt = str(body["messages"][-1]["content"])
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": f"{prompt} / answer {i}"},
            "finish_reason": "stop",
        }
        for i in range(body.get("n") or 1)
    ]
    completion_id = "chatcmpl-" + hashlib.sha256(prompt.encode()).hexdigest()[:12]
    return {"id": completion_id, "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": choices}  # fmt: skip


async def _distinct_choices(request: httpx.Request) -> httpx.Response:
    if request.method == "GET":
        return httpx.Response(200, json={"object": "list", "data": [{"id": "choices-model"}]})
    return httpx.Response(200, json=_answer(json.loads(await request.aread())))


def distinct_choices_transport() -> httpx.MockTransport:
    """Chat answers "<prompt> / answer <i>" for each of n choices, with an id derived from the prompt."""
    return httpx.MockTransport(_distinct_choices)


def _chunk(content: str) -> bytes:
    chunk = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": 1, "model": SLOW_MODEL,
             "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}  # fmt: skip
    return f"data: {json.dumps(chunk)}\n\n".encode()


class _SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": SLOW_MODEL}, {"id": FINITE_MODEL}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        finite = body.get("model") == FINITE_MODEL
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        try:
            # A token every 0.1 s: for far longer than any grace period, or FINITE_TOKENS of them.
            for n in range(FINITE_TOKENS if finite else 10_000):
                self.wfile.write(_chunk(f" token{n}"))
                self.wfile.flush()
                time.sleep(0.1)
            stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
            last = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": 1,
                    "model": FINITE_MODEL, "choices": [stop]}  # fmt: skip
            self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
            self.wfile.flush()
        except OSError:
            pass  # the gateway hung up


@contextmanager
def slow_stream_upstream() -> Iterator[str]:
    """An OpenAI-compatible upstream whose streams never finish; yields its /v1 URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def gateway_subprocess(config: Path, log_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``hhh serve``, yielding its base URL and the process (to signal it)."""
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
    environment = {k: v for k, v in os.environ.items() if k not in ("HHH_UPSTREAM_URL", "REDIS_URL")}
    with (log_dir / "gateway.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=environment)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", process, timeout=120)
        yield f"http://127.0.0.1:{port}/v1", process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
