"""Hostile and broken upstreams for the relay's security tests (issue 11, items 14, 15, 17, 18, 21).

- ``ScriptedUpstream``: an httpx.MockTransport whose every answer the test scripts (no sockets), and
  ``relay_gateway``: the gateway in front of it, unguarded, guarded by a fake guard, or recording to a
  real Redis.
- ``SilentUpstream``: a real socket server that reads each request and never answers, recording when the
  gateway closed the connection: what a slow LLM sees of a client that left.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

import httpx
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.auth import hash_key
from gateway.settings import (
    ApiKey,
    AuthSettings,
    FeedbackSettings,
    RedisSettings,
    RelaySettings,
    Settings,
    UpstreamSettings,
)
from guards.policy import GuardSpec, Policy, PolicyBook, Rule, StreamPolicy
from tests.support.fake_guards import WordGuard

GATEWAY_KEY = "hhh-relay-test-key"
UPSTREAM_KEY = "sk-relay-upstream-0123456789abcdef"
# "hostile" supports n and include_usage; "hostile-no-n" is declared like llama.cpp, so the gateway fans
# n out into copies and adds the usage chunk itself.
MODEL = "hostile"
MODEL_NO_N = "hostile-no-n"

Handler = Callable[[httpx.Request, dict[str, Any]], Awaitable[httpx.Response]]


def sse_frame(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def chunk(content: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-hostile",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }


def completion(content: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    return {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def event_stream(frames: Iterable[bytes]) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        for frame in frames:
            yield frame

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


class ScriptedUpstream:
    """Answers completions with ``handler(request, body)``; records every request."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.handler(request, json.loads(await request.aread()))


def relay_settings(
    *, guarded: bool = False, redis_url: str | None = None, data_dir: str = "~/.hhh", max_event_bytes: int = 0
) -> Settings:
    upstreams = [
        UpstreamSettings(name="hostile", url="http://hostile.test/v1", api_key=UPSTREAM_KEY, models=[MODEL]),
        UpstreamSettings(
            name="hostile-no-n",
            url="http://hostile-no-n.test/v1",
            api_key=UPSTREAM_KEY,
            models=[MODEL_NO_N],
            supports_n=False,
            supports_stream_usage=False,
        ),
    ]
    output = [Rule(guard="toxicity")] if guarded else []
    windows = StreamPolicy(min_chars=10, max_chars=40, overlap_chars=12)
    return Settings(
        data_dir=data_dir,
        upstreams=upstreams,
        relay=RelaySettings(max_event_bytes=max_event_bytes) if max_event_bytes else RelaySettings(),
        guards={"toxicity": GuardSpec(type="toxicity")} if guarded else {},
        policies=PolicyBook(default=Policy(output=output, stream=windows)),
        feedback=FeedbackSettings(record=redis_url is not None),
        redis=RedisSettings(url=redis_url),
        auth=AuthSettings(keys=[ApiKey(tenant="relay", sha256=hash_key(GATEWAY_KEY))]),
    )


@asynccontextmanager
async def relay_gateway(
    upstream: ScriptedUpstream, settings: Settings
) -> AsyncIterator[AsyncTestClient[Any]]:
    """The gateway in front of ``upstream``; a guarded ``settings`` gets the fake word guard."""
    guards = {"toxicity": WordGuard()} if settings.guards else {}
    app = create_app(settings, upstream_transport=upstream.transport(), guards=guards)
    async with AsyncTestClient(app) as client:
        client.headers["authorization"] = f"Bearer {GATEWAY_KEY}"
        yield client


# --- a real socket upstream that never answers -----------------------------------------------------


class SilentConnection:
    def __init__(self, marker: str) -> None:
        self.marker = marker  # the text of the request it carried, to tell tests apart
        self.closed_by_gateway = threading.Event()


class SilentUpstream:
    """Reads each request whole, never answers, and records when the gateway closed the connection."""

    def __init__(self) -> None:
        self.connections: list[SilentConnection] = []
        self._arrived = threading.Condition()
        self._sockets: list[socket.socket] = []

    def received(self, marker: str, count: int, timeout: float) -> list[SilentConnection]:
        """Wait until ``count`` requests carrying ``marker`` have arrived; return their connections."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.carrying(marker)) >= count, timeout)
            return self.carrying(marker)

    def carrying(self, marker: str) -> list[SilentConnection]:
        return [c for c in self.connections if c.marker == marker]

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # the listener was closed: the test is over
            self._sockets.append(sock)
            threading.Thread(target=self._hold, args=(sock,), daemon=True).start()

    def _hold(self, sock: socket.socket) -> None:
        connection = SilentConnection(_marker(_read_request(sock)))
        with self._arrived:
            self.connections.append(connection)
            self._arrived.notify_all()
        try:
            while sock.recv(4096):  # b"": the gateway closed its side
                pass
        except OSError:
            pass  # reset by the gateway: closed too
        connection.closed_by_gateway.set()

    def close(self) -> None:
        for sock in self._sockets:
            with suppress(OSError):
                sock.close()


def _read_request(sock: socket.socket) -> dict[str, Any]:
    data = b""
    while b"\r\n\r\n" not in data:
        received = sock.recv(65536)
        if not received:
            return {}
        data += received
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        received = sock.recv(65536)
        if not received:
            break
        body += received
    try:
        decoded: dict[str, Any] = json.loads(body)
    except ValueError:
        return {}
    return decoded


def _marker(body: dict[str, Any]) -> str:
    if body.get("messages"):
        return str(body["messages"][-1].get("content"))
    return str(body.get("prompt") or body.get("input") or "")


@contextmanager
def silent_upstream() -> Iterator[tuple[str, SilentUpstream]]:
    upstream = SilentUpstream()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    threading.Thread(target=upstream.serve, args=(listener,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", upstream
    finally:
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() above
        listener.close()
        upstream.close()
