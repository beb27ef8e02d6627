"""A fast OpenAI-compatible stub upstream for benchmarks: fixed answers, no model.

Run it as its own process (``python -m tests.benchmarks.fast_stub --port P``) so it never competes with
the load generator for a GIL. ``disable_nagle_algorithm`` matters: without it every keep-alive response
stalls about 40 ms, because headers and body leave in two writes.
"""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1,
        "model": "stub-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A short answer."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }
).encode()
# What an upstream with its own /v1/responses answers (model "stub-native", non-stream only).
RESPONSE = json.dumps(
    {
        "id": "resp_stub",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "stub-native",
        "output": [
            {
                "type": "message",
                "id": "msg_stub",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "A short answer.", "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13},
    }
).encode()
MODELS = json.dumps(
    {
        "object": "list",
        "data": [{"id": "stub-model", "object": "model"}, {"id": "stub-long", "object": "model"}],
    }
).encode()


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "stub-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


# A 300-word answer in natural sentences, streamed a word a chunk (model "stub-long").
LONG_ANSWER = " ".join(
    [
        "The harbour town wakes early, long before the first ferry leaves.",
        "Fishermen check their nets while the bakery fills the street with the smell of bread.",
        "By seven the market is busy, and the stall owners argue cheerfully about the weather.",
        "Visitors often ask where to eat, and the answer is always the small cafe by the lighthouse.",
    ]
    * 6
)
LONG_WORDS = LONG_ANSWER.split(" ")
# The same answer whole, for a non-stream request to "stub-long".
LONG_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-stub-long",
        "object": "chat.completion",
        "created": 1,
        "model": "stub-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": LONG_ANSWER}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": len(LONG_WORDS),
            "total_tokens": 9 + len(LONG_WORDS),
        },
    }
).encode()

STREAM = (
    _chunk({"role": "assistant"})
    + b"".join(_chunk({"content": word}) for word in ["A", " short", " streamed", " answer", "."])
    + _chunk({}, "stop")
    + b"data: [DONE]\n\n"
)


def _streams(body: bytes) -> bool:
    return b'"stream": true' in body or b'"stream":true' in body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *_: Any) -> None:
        pass

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(MODELS, "application/json")

    token_delay_s = 0.0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path.endswith("/responses"):
            self._send(RESPONSE, "application/json")
        elif b"stub-long" in body and _streams(body):
            self._stream_long()
        elif b"stub-long" in body:
            self._send(LONG_COMPLETION, "application/json")
        elif _streams(body):
            self._send(STREAM, "text/event-stream")
        else:
            self._send(COMPLETION, "application/json")

    def _stream_long(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        frames = [_chunk({"role": "assistant"})]
        frames += [_chunk({"content": word if i == 0 else " " + word}) for i, word in enumerate(LONG_WORDS)]
        frames += [_chunk({}, "stop"), b"data: [DONE]\n\n"]
        for frame in frames:
            self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
            self.wfile.flush()
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-delay-ms", type=float, default=0.0, help="pause between stub-long chunks")
    args = parser.parse_args()
    Handler.token_delay_s = args.token_delay_ms / 1000
    Server(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
