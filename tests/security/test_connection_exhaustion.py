"""Threat: one client ties up the server's memory or connections (issue 11, item 20).

A 20 MB header was served, and 200 slowloris connections (a head sent a byte at a time) were never
closed. Real sockets against a real ``hhh serve``, with short limits so the tests are quick.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ops_servers import exchange, json_body, small_gateway, status_of, trickle_until_closed

LIMITS = {
    "max_header_bytes": 8192,
    "max_headers": 50,
    "header_timeout_s": 1.0,
    "body_timeout_s": 1.0,
}
# Generous against 1 s limits: only a server that never closes a connection takes this long.
GIVE_UP_AFTER_S = 60.0


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with small_gateway(tmp_path_factory.mktemp("limits"), {"limits": LIMITS}) as started:
        yield started


def _get(headers: bytes = b"") -> bytes:
    return b"GET /health HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n" + headers + b"\r\n"


def test_a_megabyte_header_is_refused_with_431_not_served(port: int) -> None:
    response = exchange(port, _get(b"x-padding: " + b"a" * 1_000_000 + b"\r\n"))
    assert status_of(response) == 431
    assert json_body(response)["error"]["code"] == "request_header_fields_too_large"


def test_a_header_over_the_byte_limit_in_one_packet_is_refused(port: int) -> None:
    response = exchange(port, _get(b"x-padding: " + b"a" * 9000 + b"\r\n"))
    assert status_of(response) == 431


def test_hundreds_of_small_headers_are_refused_with_431(port: int) -> None:
    headers = b"".join(b"x-h%d: 1\r\n" % i for i in range(500))
    response = exchange(port, _get(headers))
    assert status_of(response) == 431
    assert "max_headers" in json_body(response)["error"]["message"]


def test_slowloris_heads_are_timed_out_and_closed(port: int) -> None:
    # Each connection keeps sending: a header that never ends, a byte at a time.
    answers = trickle_until_closed(
        port, b"GET /health HTTP/1.1\r\nhost: gateway\r\nx-slow: ", count=20, give_up_after_s=GIVE_UP_AFTER_S
    )
    assert all(status_of(answer) == 408 for answer in answers)


def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    answers = trickle_until_closed(port, b"", count=1, give_up_after_s=GIVE_UP_AFTER_S, step_s=60.0)
    assert status_of(answers[0]) in (408, None)


def test_a_slow_body_is_timed_out_with_408(port: int) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
        b"content-length: 100000\r\n\r\n{"
    )
    answers = trickle_until_closed(port, head, count=5, give_up_after_s=GIVE_UP_AFTER_S)
    assert all(status_of(answer) == 408 for answer in answers)
    assert all(json_body(answer)["error"]["code"] == "request_timeout" for answer in answers)


def test_a_body_sent_with_its_head_in_one_packet_is_not_taken_for_a_header(port: int) -> None:
    """The header limit must count only the head: a request whose 40 KB body arrives in the same
    packet as its head is a normal request (found by the whole suite: it was answered 431)."""
    body = b'{"completion_id": "c", "rating": "up", "comment": "' + b"x" * 40_000 + b'"}'
    head = (
        b"POST /v1/feedback HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    response = exchange(port, head + body)
    status = status_of(response)
    assert status != 431
    assert status in (401, 413)  # the app answered: a missing key, or the feedback route's own body cap


def test_requests_within_the_limits_are_still_served_after_the_attacks(port: int) -> None:
    headers = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 100) for i in range(40))  # 40 headers, about 4.5 KB
    assert status_of(exchange(port, _get(headers))) == 200
    assert status_of(exchange(port, _get())) == 200


def test_connections_beyond_max_concurrency_get_503(tmp_path: Path) -> None:
    limits = {"max_concurrency": 4, "header_timeout_s": 120.0}
    with small_gateway(tmp_path, {"limits": limits}) as port:
        held = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(4)]
        try:
            for sock in held:
                sock.sendall(b"GET /health HTTP/1.1\r\nhost: gateway\r\n")  # a head that is never finished
            refused = exchange(port, _get())
            assert status_of(refused) == 503
            assert json_body(refused)["error"]["code"] == "server_busy"  # OpenAI's envelope, not plain text
        finally:
            for sock in held:
                sock.close()
        # Freed once the server has seen them close (it notices on its next turn of the loop).
        statuses = []
        for _ in range(50):
            statuses.append(status_of(exchange(port, _get())))
            if statuses[-1] == 200:
                break
            time.sleep(0.1)
        assert statuses[-1] == 200
