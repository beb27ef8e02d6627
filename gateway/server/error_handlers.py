"""Every error the app answers, in the one OpenAI envelope of ``gateway.errors``; and the request id on
every response, routed or not."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import Message, Scope

from gateway.context import request_id_from
from gateway.errors import BodyTooLarge, GatewayError, InvalidRequest, RouteNotFound, encode_error
from gateway.server.middleware import REQUEST_ID_HEADER

log = logging.getLogger("hhh.app")  # the logger these lines have always been written to


def _error_response(error: GatewayError) -> Response[bytes]:
    return Response(content=encode_error(error), status_code=error.status_code, media_type="application/json")


def on_gateway_error(_: Request[Any, Any, Any], exc: GatewayError) -> Response[bytes]:
    return _error_response(exc)


def on_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if exc.status_code == 413:
        return _error_response(BodyTooLarge("The request body is larger than this gateway accepts."))
    if exc.status_code in (404, 405):
        return _error_response(RouteNotFound(str(exc.detail), exc.status_code))
    if exc.status_code == 400:
        return _error_response(InvalidRequest(str(exc.detail)))
    error = GatewayError(str(exc.detail))
    error.status_code = exc.status_code
    return _error_response(error)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # The one place a bug surfaces: logged with its trace for operators, never shown to clients.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error_response(GatewayError("The gateway failed to process the request; it has been logged."))


async def add_request_id_everywhere(message: Message, scope: Scope) -> None:
    """Unrouted requests (404s) skip route middleware; they still get an x-request-id."""
    if message["type"] == "http.response.start":
        headers = list(message.get("headers", ()))
        if not any(key == REQUEST_ID_HEADER for key, _ in headers):
            message["headers"] = [*headers, (REQUEST_ID_HEADER, request_id_from(None).encode())]
