"""A scripted upstream that speaks the Responses API natively (``/v1/responses``, its stream events,
``GET /v1/responses/{id}``, ``/cancel``), as an httpx transport for unit tests and as a real HTTP server for
the SDK's integration test. It records every body it received.

Its model echoes: the answer's text is the last user text of the input. A text that starts with ``call:``
is answered with a ``function_call`` item whose arguments are the rest. Streams come in 3-character deltas,
so guards see words split across events. Any other model ``…-404`` answers 404 to ``/responses`` (a server
with none); its chat completions are the fake upstream's echo.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.support.fake_upstream import FakeUpstream

NATIVE_MODELS = ["native", "native-404"]


def _last_user_text(body: dict[str, Any]) -> str:
    given = body.get("input")
    if isinstance(given, str):
        return given
    for item in reversed(given or []):
        if item.get("role") == "user":
            content = item["content"]
            if isinstance(content, str):
                return content
            return "".join(part.get("text", "") for part in content)
    return ""


def _usage() -> dict[str, Any]:
    return {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 8,
    }


class ResponsesScript:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.stored: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def envelope(self, body: dict[str, Any], status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": f"resp_up{uuid.uuid4().hex}",
            "object": "response",
            "created_at": 1700000000,
            "status": status,
            "model": body.get("model"),
            "output": output,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "metadata": body.get("metadata") or {},
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": body.get("tools") or [],
            "temperature": None,
            "top_p": None,
            "previous_response_id": body.get("previous_response_id"),
            "store": body.get("store", True),
            "background": body.get("background", False),
            "usage": _usage() if status == "completed" else None,
        }

    def output(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        said = _last_user_text(body)
        if said.startswith("call:"):
            arguments = said.removeprefix("call:")
            return [
                {
                    "type": "function_call",
                    "id": "fc_up1",
                    "call_id": "call_up1",
                    "name": "say",
                    "arguments": arguments,
                    "status": "completed",
                }
            ]
        part = {"type": "output_text", "text": said, "annotations": []}
        return [
            {
                "type": "message",
                "id": "msg_up1",
                "role": "assistant",
                "status": "completed",
                "content": [part],
            }
        ]

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.bodies.append(body)
        response = self.envelope(body, "completed", self.output(body))
        self.stored[response["id"]] = response
        return response

    def events(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The stream of ``answer(body)``: created, each item's deltas, completed."""
        final = self.answer(body)
        started = {**final, "status": "in_progress", "output": [], "usage": None}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": started},
            {"type": "response.in_progress", "response": started},
        ]
        for index, item in enumerate(final["output"]):
            opened = {**item, "status": "in_progress"}
            if item["type"] == "message":
                opened["content"] = []
            else:
                opened["arguments"] = ""
            events.append({"type": "response.output_item.added", "output_index": index, "item": opened})
            where = {"item_id": item["id"], "output_index": index}
            if item["type"] == "message":
                text = item["content"][0]["text"]
                part = {"type": "output_text", "text": "", "annotations": []}
                events.append(
                    {"type": "response.content_part.added", **where, "content_index": 0, "part": part}
                )
                for start in range(0, len(text), 3):
                    delta = text[start : start + 3]
                    events.append(
                        {"type": "response.output_text.delta", **where, "content_index": 0, "delta": delta}
                    )
                events.append(
                    {"type": "response.output_text.done", **where, "content_index": 0, "text": text}
                )
            else:
                arguments = item["arguments"]
                for start in range(0, len(arguments), 3):
                    delta = arguments[start : start + 3]
                    events.append({"type": "response.function_call_arguments.delta", **where, "delta": delta})
                events.append(
                    {"type": "response.function_call_arguments.done", **where, "arguments": arguments}
                )
            events.append({"type": "response.output_item.done", "output_index": index, "item": item})
        events.append({"type": "response.completed", "response": final})
        return [{**event, "sequence_number": number} for number, event in enumerate(events)]

    def stream_bytes(self, body: dict[str, Any]) -> bytes:
        return b"".join(
            f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode() for event in self.events(body)
        )

    def stored_answer(self, response_id: str, cancel: bool) -> tuple[int, dict[str, Any]]:
        found = self.stored.get(response_id)
        if found is None:
            error = {"message": f"No response with id '{response_id}'.", "type": "invalid_request_error"}
            return 404, {"error": {**error, "param": None, "code": None}}
        if cancel:
            found = {**found, "status": "cancelled"}
        return 200, found


def native_transport(script: ResponsesScript, chat: FakeUpstream | None = None) -> httpx.MockTransport:
    """``script`` on ``/responses``; anything else goes to ``chat`` (the fake upstream)."""
    fallback = chat or FakeUpstream()

    async def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if "/responses" not in path:
            if request.method == "GET" and path.endswith("/models"):
                models = [{"id": m} for m in [*NATIVE_MODELS, "echo"]]
                return httpx.Response(200, json={"object": "list", "data": models})
            return await fallback.handle(request)
        if not path.endswith("/responses"):
            response_id = path.split("/responses/", 1)[1].removesuffix("/cancel")
            status, found = script.stored_answer(response_id, path.endswith("/cancel"))
            return httpx.Response(status, json=found)
        body = json.loads(await request.aread())
        if str(body.get("model")).endswith("-404"):
            with script.lock:
                script.bodies.append(body)
            return httpx.Response(404, text="404 page not found")
        if body.get("stream"):
            headers = {"content-type": "text/event-stream"}
            return httpx.Response(200, headers=headers, content=script.stream_bytes(body))
        return httpx.Response(200, json=script.answer(body))

    return httpx.MockTransport(handle)


@contextmanager
def native_server(script: ResponsesScript) -> Iterator[str]:
    """``script`` as a real HTTP server on loopback (its base URL, ending in /v1)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.endswith("/models"):
                self._json(200, {"object": "list", "data": [{"id": "native"}]})
                return
            status, found = script.stored_answer(self.path.rsplit("/", 1)[1], cancel=False)
            self._json(status, found)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            if self.path.endswith("/cancel"):
                status, found = script.stored_answer(self.path.split("/")[-2], cancel=True)
                self._json(status, found)
            elif body.get("stream"):
                payload = script.stream_bytes(body)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            else:
                self._json(200, script.answer(body))

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
