"""``hhh serve --workers 2`` as deployed: two worker processes on one port in front of the stub upstream and
a real Redis, with the default guards. Connections are answered by two different worker pids (found from
the kernel's socket table, so the gateway exposes nothing new), a guarded request through the ``openai``
SDK is answered, and SIGTERM to the parent stops every worker cleanly."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from gateway.relay.embedded_llm import free_port
from tests.support.processes import children, model_children, wait_gone
from tests.support.redis_server import redis_server
from tests.support.servers import wait_until_up

WORKERS = 2


def _server_socket_inode(port: int, client_port: int) -> str:
    """The inode of the gateway's end of the connection from ``client_port`` (IPv4, established)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if (
            state == "01"
            and int(local.split(":")[1], 16) == port
            and int(remote.split(":")[1], 16) == client_port
        ):
            return inode
    raise AssertionError(f"no established connection from port {client_port}")


def _owner(pids: set[int], inode: str) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue  # closed while we looked
    return None


@pytest.fixture
def workers(tmp_path: Path, stub: tuple[str, object]) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    stub_url, _ = stub
    with redis_server(tmp_path) as redis_url:
        config = {  # the default guards and policies: each worker loads its own models
            "data_dir": str(tmp_path / "data"),
            "redis": {"url": redis_url},
            "upstreams": [{"name": "stub", "url": stub_url}],
        }
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        command = [sys.executable, "-m", "gateway", "serve", "--config", str(path), "--port", str(port)]
        environment = {k: v for k, v in os.environ.items() if k not in ("HHH_UPSTREAM_URL", "REDIS_URL")}
        log_path = tmp_path / "gateway.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*command, "--workers", str(WORKERS)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=environment,
            )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/health", process, timeout=240)
            yield port, process, log_path
        finally:
            if process.poll() is None:  # the test failed before its SIGTERM: no worker may outlive it
                for child in children(process.pid):
                    os.kill(child, signal.SIGKILL)
                process.kill()
                process.wait()


def test_two_workers_share_the_port_answer_guarded_requests_and_stop_on_sigterm(
    workers: tuple[int, subprocess.Popen[bytes], Path],
) -> None:
    port, process, log_path = workers
    supervised = children(process.pid)

    # Both workers listen once both have started; until then one may take every connection.
    serving: set[int] = set()
    open_connections = []
    for _ in range(400):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/health")
        assert connection.getresponse().read() is not None
        client_port = connection.sock.getsockname()[1]
        owner = _owner(supervised, _server_socket_inode(port, client_port))
        assert owner is not None, "a connection held by no worker process"
        serving.add(owner)
        open_connections.append(connection)  # held open, so the kernel does not reuse its port
        if len(serving) == WORKERS:
            break
    for connection in open_connections:
        connection.close()
    assert len(serving) == WORKERS, f"connections answered by {serving} only"

    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60
    )
    for _ in range(4):
        answer = client.chat.completions.create(
            model="stub-echo", messages=[{"role": "user", "content": "Name a colour."}]
        )
        assert answer.choices[0].message.content

    # Each worker runs presidio in a child of its own (pii.own_process); none may outlive the gateway.
    everything = children(process.pid, recursive=True)
    presidio = {pid for worker in serving for pid in model_children(worker)}
    assert len(presidio) == WORKERS, f"presidio children {presidio} of workers {serving}"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    for pid in serving:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the gateway"
    # A worker's children end when its end of their pipe closes (presidio's is joined; multiprocessing's
    # resource tracker is not), so one may take a moment after the gateway; none may stay.
    for pid in everything:
        assert wait_gone(pid), f"{pid} (a worker's child) outlived the gateway"
    log = log_path.read_text()
    assert f"all {WORKERS} workers stopped" in log
    assert "Traceback" not in log


def test_workers_on_a_taken_port_stop_the_gateway_instead_of_restarting_forever(tmp_path: Path) -> None:
    # A start-up that fails would fail the same way in every restart: the supervisor must give up.
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    environment = {k: v for k, v in os.environ.items() if k != "HHH_CONFIG"}
    environment |= {"HHH_UPSTREAM_URL": "http://127.0.0.1:9/v1", "REDIS_URL": "redis://127.0.0.1:9/0"}
    try:
        finished = subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--workers", "2"],
            capture_output=True,
            text=True,
            env=environment,
            timeout=180,
            check=False,
        )
    finally:
        held.close()
    assert finished.returncode == 1
    assert "could not start" in finished.stderr
    assert "Address already in use" in finished.stderr
