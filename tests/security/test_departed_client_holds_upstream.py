"""Threat: clients that leave before the upstream answers keep upstream calls (and generation) alive.

Before: with a 30 s read timeout, 50 departed clients held 50 upstream connections for 33 s; with the
default 300 s a slow LLM generated for nobody. Real sockets here: a real gateway process (uvicorn) in
front of an upstream that reads each request and never answers, and records when the gateway closed
the connection. The upstream's read timeout is 600 s, so only the client's departure can close it.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from gateway.auth import hash_key
from tests.support.relay_upstreams import GATEWAY_KEY, SilentUpstream, silent_upstream
from tests.support.servers import gateway_process

# Long enough for a loaded 2-core machine; the upstream would otherwise hold on for 600 s.
PATIENCE_S = 30.0


@pytest.fixture(scope="module")
def silent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SilentUpstream]]:
    logs = tmp_path_factory.mktemp("departed-client")
    with silent_upstream() as (upstream_url, upstream):
        config = {
            "data_dir": str(logs / "data"),
            "auth": {"keys": [{"tenant": "relay", "sha256": hash_key(GATEWAY_KEY)}]},
            "upstreams": [
                {"name": "silent", "url": upstream_url, "models": ["silent"], "timeouts": {"read": 600}},
                {
                    "name": "silent-no-n",
                    "url": upstream_url,
                    "models": ["silent-no-n"],
                    "timeouts": {"read": 600},
                    "supports_n": False,
                },
            ],
            "guards": {},
            "policies": {"default": {}},
            "feedback": {"record": False},
        }
        path = Path(logs / "gateway.yaml")
        path.write_text(yaml.safe_dump(config))
        with gateway_process(path, logs) as gateway_url:
            yield gateway_url, upstream


def _send_then_leave(
    gateway_url: str, path: str, body: dict[str, Any], upstream: SilentUpstream, calls: int
) -> list[Any]:
    """POST over a raw socket, wait until the upstream has every call, then close the socket."""
    address = urlparse(gateway_url)
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1{path} HTTP/1.1\r\nhost: {address.netloc}\r\nauthorization: Bearer {GATEWAY_KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port)) as client:
        client.sendall(head.encode() + payload)
        connections = upstream.received(_marker(body), calls, PATIENCE_S)
        assert len(connections) == calls, "the gateway never called the upstream"
    return connections


def _marker(body: dict[str, Any]) -> str:
    return str(
        body["messages"][-1]["content"] if "messages" in body else body.get("prompt") or body.get("input")
    )


CASES = [
    pytest.param("/chat/completions", {"model": "silent"}, 1, id="chat"),
    pytest.param("/chat/completions", {"model": "silent", "stream": True}, 1, id="chat-stream"),
    pytest.param("/chat/completions", {"model": "silent-no-n", "n": 3}, 3, id="chat-fanned-out"),
    pytest.param(
        "/chat/completions", {"model": "silent-no-n", "n": 3, "stream": True}, 3, id="chat-stream-fanned-out"
    ),
    pytest.param("/completions", {"model": "silent"}, 1, id="legacy"),
    pytest.param("/completions", {"model": "silent", "stream": True}, 1, id="legacy-stream"),
    pytest.param("/embeddings", {"model": "silent"}, 1, id="embeddings"),
]


@pytest.mark.parametrize(("path", "fields", "calls"), CASES)
def test_departed_client_cancels_the_upstream_call(
    silent: tuple[str, SilentUpstream], path: str, fields: dict[str, Any], calls: int
) -> None:
    gateway_url, upstream = silent
    text = f"departing {uuid.uuid4()}"
    if path == "/chat/completions":
        body = {**fields, "messages": [{"role": "user", "content": text}]}
    else:
        body = {**fields, "prompt" if path == "/completions" else "input": text}
    connections = _send_then_leave(gateway_url, path, body, upstream, calls)
    for connection in connections:
        assert connection.closed_by_gateway.wait(PATIENCE_S), "the upstream call outlived its client"
