"""Per-connection limits for the HTTP server (``server.limits``), which uvicorn does not enforce itself.

uvicorn's httptools protocol buffers a request head of any size (a 20 MB header was served) and has no
clock on reading a head or a body: 200 slow-header (slowloris) connections stayed open for good. The
protocol below adds, on a connection:

- the head (request line and headers) capped in bytes and in header count: 431;
- a time limit from the connection (or a request's first byte) to its last header: 408;
- a time limit from the last header to the last body byte: 408 (or, when the app already answered, the
  connection is closed).

A rejection is an OpenAI-shaped error. The server half-closes and reads on for a moment before it
closes ("lingering close"), so the client reads the answer rather than a reset.
"""

from __future__ import annotations

import asyncio
import http
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.errors import GatewayError, HeadersTooLarge, RequestTimeout, ServerBusy, encode_error
from gateway.settings import ConnectionLimits

# How long a rejected connection is read and discarded before it is closed.
_LINGER_S = 2.0


class _Rejected(Exception):
    """Raised from a parser callback to stop parsing; the error to answer is kept on the protocol."""


def error_response(error: GatewayError) -> bytes:
    body = encode_error(error)
    head = (
        f"HTTP/1.1 {error.status_code} {http.HTTPStatus(error.status_code).phrase}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``limits`` enforced (bound by ``limited_protocol``)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._heads_done = 0  # heads completed on this connection
        self._head_bytes = 0  # raw bytes of chunks read while a head was incomplete
        self._header_count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._pending: GatewayError | None = None
        self._rejected = False

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return  # lingering: what the client still sends is read and dropped
        head_at_start, heads_before = self._in_head, self._heads_done
        try:
            super().data_received(data)
        except _Rejected:
            self._reject_pending()
            return
        # A chunk in which a head completed was checked exactly (on_headers_complete): it may carry a
        # whole body as well, which is no header. Only chunks of a head still incomplete are counted.
        if self._rejected or not (head_at_start and self._in_head) or self._heads_done != heads_before:
            return
        # Counted here, as it arrives: httptools buffers a header until it ends, however long.
        self._head_bytes += len(data)
        if self._head_bytes > self.limits.max_header_bytes:
            self._reject(self._too_large("bytes"))

    def send_400_response(self, msg: str) -> None:
        # A parser callback below raised _Rejected; httptools reports that as a parser error.
        if self._pending is not None:
            self._reject_pending()
        else:
            super().send_400_response(msg)

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_count = 0
        self._arm(self.limits.header_timeout_s, self._head_timed_out)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._pending = self._too_large("headers")
            raise _Rejected
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads_done += 1
        self._disarm()
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        self._head_bytes = 0
        if size > self.limits.max_header_bytes:
            self._pending = self._too_large("bytes")
            raise _Rejected
        if self._over_concurrency():  # uvicorn would answer in plain text: the envelope instead
            self._pending = ServerBusy(
                f"The server is at its limit of {self.limits.max_concurrency} connections and requests "
                "(server.limits.max_concurrency). Try again."
            )
            raise _Rejected
        self._arm(self.limits.body_timeout_s, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True  # what comes next is the next request's head
        super().on_message_complete()

    # Limits

    def _over_concurrency(self) -> bool:
        limit = self.limit_concurrency
        return limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit)

    def _too_large(self, what: str) -> HeadersTooLarge:
        if what == "headers":
            return HeadersTooLarge(
                f"The request has more than {self.limits.max_headers} headers (server.limits.max_headers)."
            )
        return HeadersTooLarge(
            f"The request line and headers exceed {self.limits.max_header_bytes} bytes "
            "(server.limits.max_header_bytes)."
        )

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        self._reject(
            RequestTimeout(
                f"The request headers did not arrive within {self.limits.header_timeout_s:g} s "
                "(server.limits.header_timeout_s)."
            )
        )

    def _body_timed_out(self) -> None:
        self._timer = None
        self._reject(
            RequestTimeout(
                f"The request body did not arrive within {self.limits.body_timeout_s:g} s "
                "(server.limits.body_timeout_s)."
            )
        )

    def _reject_pending(self) -> None:
        error, self._pending = self._pending, None
        if error is not None:
            self._reject(error)

    def _reject(self, error: GatewayError) -> None:
        if self._rejected or self.transport.is_closing():
            return
        self._rejected = True
        self._disarm()
        self.logger.info("refused %s: %s", _peer(self.client), error.message)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app waits on this request: it hears a disconnect, and what it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()  # an answer is under way: no second one can be sent
                return
        self.transport.write(error_response(error))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self.transport.close)


def limited_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with ``limits`` enforced; pass it as uvicorn's ``http``."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


def uvicorn_options(limits: ConnectionLimits) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` that limit what a connection may hold."""
    return {
        "http": limited_protocol(limits),
        "timeout_keep_alive": limits.keep_alive_s,
        "limit_concurrency": limits.max_concurrency,
    }
