"""A model server on a real loopback socket that plays a safety classifier by script, for the
``safety_llm`` guard's tests and benchmark. It answers ``/v1/chat/completions`` and ``/v1/completions``
as Llama Guard would (or Yes/No, for ShieldGemma-style prompts), by markers in the judged text:

- ``UNSAFE-HATE`` -> ``unsafe\\nS10``; ``UNSAFE-MULTI`` -> ``unsafe\\nS1,S10``; ``UNSAFE-ODD`` ->
  ``unsafe\\nS99`` (a code no template knows);
- ``ANSWER-VIOLENT`` in an assistant message (output stage only) -> ``unsafe\\nS1``; ``ANSWER-MUDDLED``
  there -> the chatty answer below;
- ``GARBLED`` -> a chatty answer that is neither safe nor unsafe; ``SERVER-ERROR`` -> HTTP 500;
- ``SLOW-REPLY`` -> answers after ``slow_seconds``;
- anything else -> ``safe``.

Raw prompts (``/v1/completions``) are judged on the whole prompt: "Yes" for the markers above, else
"No", with first-token log probabilities when asked. Every request body is kept in ``bodies``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

UNSAFE_MARKERS = {"UNSAFE-HATE": "unsafe\nS10", "UNSAFE-MULTI": "unsafe\nS1,S10", "UNSAFE-ODD": "unsafe\nS99"}
GARBLED_ANSWER = "Well, I think this conversation is probably fine, mostly."


class ScriptedSafetyModel:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.slow_seconds = 3.0
        self.lock = threading.Lock()
        self.url = ""

    def verdict(self, text: str, answer: str | None) -> str | None:
        """The Llama Guard answer for a judged text (None: the server fails)."""
        if "SERVER-ERROR" in text:
            return None
        if "SLOW-REPLY" in text:
            time.sleep(self.slow_seconds)
        if "GARBLED" in text:
            return GARBLED_ANSWER
        for marker, said in UNSAFE_MARKERS.items():
            if marker in text:
                return said
        if answer is not None and "ANSWER-VIOLENT" in answer:
            return "unsafe\nS1"
        if answer is not None and "ANSWER-MUDDLED" in answer:
            return GARBLED_ANSWER
        return "safe"

    def reply(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.bodies.append(body)
            self.paths.append(path)
            self.headers.append(headers)
        if path.endswith("/chat/completions"):
            messages = body.get("messages") or []
            last = messages[-1] if messages else {"role": "user", "content": ""}
            answer = last["content"] if last.get("role") == "assistant" else None
            said = self.verdict(str(last.get("content", "")), answer)
            if said is None:
                return 500, {"error": {"message": "scripted failure", "type": "server_error"}}
            return 200, _chat(said, body)
        prompt = str(body.get("prompt", ""))
        said = self.verdict(prompt, None)
        if said is None:
            return 500, {"error": {"message": "scripted failure", "type": "server_error"}}
        if said.startswith(("unsafe", "safe")) and said != GARBLED_ANSWER:
            said = "Yes" if said.startswith("unsafe") else "No"
        return 200, _completion(said, body)


def _chat(text: str, body: dict[str, Any]) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
    }
    if body.get("logprobs"):
        first = text.split("\n")[0]
        other = "safe" if first == "unsafe" else "unsafe"
        top = [{"token": first, "logprob": math.log(0.9)}, {"token": other, "logprob": math.log(0.1)}]
        choice["logprobs"] = {"content": [{"token": first, "logprob": math.log(0.9), "top_logprobs": top}]}
    return {
        "id": "chatcmpl-guard",
        "object": "chat.completion",
        "model": body.get("model"),
        "choices": [choice],
    }


def _completion(text: str, body: dict[str, Any]) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": "length"}
    if body.get("logprobs"):
        yes = math.log(0.8) if text == "Yes" else math.log(0.2)
        no = math.log(0.2) if text == "Yes" else math.log(0.8)
        choice["logprobs"] = {"tokens": [text], "top_logprobs": [{"Yes": yes, "No": no, "The": -9.0}]}
    return {"id": "cmpl-guard", "object": "text_completion", "model": body.get("model"), "choices": [choice]}


def _handler(model: ScriptedSafetyModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # or keep-alive calls stall ~40 ms (FACTS.md)

        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": "llama-guard", "object": "model"}]})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            self._send(*model.reply(self.path, body, dict(self.headers)))

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # read at bind time: concurrent checks must not be refused


@contextmanager
def scripted_safety_model() -> Iterator[ScriptedSafetyModel]:
    """The scripted server on a free loopback port; ``model.url`` is its ``/v1`` root."""
    model = ScriptedSafetyModel()
    server = _Server(("127.0.0.1", 0), _handler(model))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    model.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield model
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    """``python -m tests.support.scripted_safety_llm PORT``: serve on loopback until killed (for the
    benchmark, which wants the server in a process of its own)."""
    import sys

    port = int(sys.argv[1])
    model = ScriptedSafetyModel()
    server = _Server(("127.0.0.1", port), _handler(model))
    server.serve_forever()


if __name__ == "__main__":
    main()
