"""Real sockets for the operations tests (issue 11, items 19 and 20): a raw HTTP/1.1 client that can
misbehave (huge heads, slow heads and bodies), an upstream that records the credentials it is sent, and a
small gateway process (no guards, no recording) with settings of the test's choosing."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.support.servers import closed_port, gateway_process


def exchange(port: int, request: bytes, timeout: float = 30.0) -> bytes:
    """Send ``request`` on a fresh connection; everything the server sends until it closes or goes
    quiet for ``timeout``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may stop reading once it has refused; its answer is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            return received
        if not data:
            return received
        received += data


def trickle_until_closed(
    port: int, opening: bytes, count: int, give_up_after_s: float, step_s: float = 0.2
) -> list[bytes]:
    """Open ``count`` connections that send ``opening``, then one more byte every ``step_s`` (a slowloris
    client). Returns what each received before the server closed it; raises if any is still open after
    ``give_up_after_s``."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    received = {sock: b"" for sock in sockets}
    open_ = set(sockets)
    try:
        for sock in sockets:
            sock.sendall(opening)
            sock.setblocking(False)
        deadline = time.monotonic() + give_up_after_s
        while open_ and time.monotonic() < deadline:
            readable, _, _ = select.select(list(open_), [], [], step_s)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                if data:
                    received[sock] += data
                else:
                    open_.discard(sock)
            for sock in list(open_):
                try:
                    sock.send(b"a")
                except (BrokenPipeError, ConnectionResetError, BlockingIOError):
                    open_.discard(sock)
        if open_:
            raise AssertionError(
                f"{len(open_)} of {count} slow connections still open after {give_up_after_s}s"
            )
        return [received[sock] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def status_of(response: bytes) -> int | None:
    line = response.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) > 1 and line.startswith(b"HTTP/1.") else None


def json_body(response: bytes) -> Any:
    return json.loads(response.partition(b"\r\n\r\n")[2])


class RecordingUpstream:
    """Answers GET …/models; keeps each request's ``authorization`` header."""

    def __init__(self, models: list[str]) -> None:
        self.models = models
        self.authorizations: list[str | None] = []


@contextmanager
def recording_upstream(models: list[str]) -> Iterator[tuple[int, RecordingUpstream]]:
    state = RecordingUpstream(models)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            state.authorizations.append(self.headers.get("authorization"))
            body = json.dumps({"object": "list", "data": [{"id": m} for m in state.models]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], state
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def small_gateway(directory: Path, server: dict[str, Any]) -> Iterator[int]:
    """``hhh serve`` with no guards, no recording and an upstream that is never called; yields its port.
    ``server`` is the config's ``server`` section."""
    config = {
        "data_dir": str(directory / "data"),
        "server": server,
        "feedback": {"record": False},
        "guards": {},
        "policies": {"default": {}},
        "upstreams": [{"name": "idle", "url": f"http://127.0.0.1:{closed_port()}/v1", "models": ["idle"]}],
    }
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    with gateway_process(path, directory) as url:
        yield int(url.rsplit(":", 1)[1].split("/", 1)[0])
