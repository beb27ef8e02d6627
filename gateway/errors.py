"""Errors as values in OpenAI's envelope.

Every failure a client can see is one of these, rendered as
``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status::

    GatewayError                      (500 server_error: the catch-all, never with a traceback)
     ├── InvalidRequest               400 invalid_request_error, names the offending ``param``
     │    ├── BodyTooLarge            413 request_too_large (input_too_large: text for the guards)
     │    ├── ContentFiltered         400 content_filter: an input guard blocked the request
     │    ├── HeadersTooLarge         431: the request head over ``server.limits``
     │    └── RequestTimeout          408: a head or body slower than ``server.limits``
     ├── AuthenticationFailed         401 invalid_api_key
     ├── GuardUnavailable             503 guard_unavailable: a guard failed and its policy fails closed
     ├── ModelNotFound                404 model_not_found
     ├── ResponseNotFound             404 not_found: a response id unknown here or another tenant's
     ├── RouteNotFound                404 / 405, for paths the gateway does not serve
     ├── ClientDisconnected           499: the client left before its answer began (nobody reads it)
     ├── RateLimited                  429 rate_limit_exceeded (in ``gateway.rate_limit.middleware``: it
     │                                carries the limiter's decision for the x-ratelimit headers)
     ├── RateLimiterUnavailable       503: Redis unreachable and ``rate_limits.on_redis_error: closed``
     ├── ResponseStoreUnavailable     503: Redis cannot say whose a response id is (fail closed)
     ├── ServerBusy                   503: past ``server.limits.max_concurrency``
     ├── ShuttingDown                 503: a stream cut at the end of ``server.shutdown_grace_s``
     └── UpstreamError
          ├── UpstreamUnreachable     502 (connect refused, DNS, reset before a response)
          ├── UpstreamTimeout         504
          ├── UpstreamBadResponse     502: a 200 whose body is not JSON, or not the shape of an answer
          ├── UpstreamStreamBroken    a stream that failed after it began: sent as a final error event
          │    └── UpstreamEventTooLarge  one server-sent event over ``relay.max_event_bytes``
          └── UpstreamStatus          the upstream's own 4xx/5xx, its envelope kept or re-wrapped

Handlers raise these; one exception handler renders them (see ``gateway.app``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from feedback.events import GuardrailsReport


class ErrorBody(msgspec.Struct, omit_defaults=False):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


class GatewayError(Exception):
    status_code = 500
    error_type = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class BodyTooLarge(InvalidRequest):
    status_code = 413
    default_code = "request_too_large"


class HeadersTooLarge(InvalidRequest):
    status_code = 431
    default_code = "request_header_fields_too_large"


class RequestTimeout(InvalidRequest):
    status_code = 408
    default_code = "request_timeout"


class ContentFiltered(InvalidRequest):
    default_code = "content_filter"

    def __init__(self, message: str, *, param: str | None, guardrails: GuardrailsReport) -> None:
        super().__init__(message, param=param)
        self.guardrails = guardrails

    def envelope(self) -> dict[str, Any]:
        envelope = super().envelope()
        envelope["error"]["guardrails"] = self.guardrails  # which guard decided, and why
        return envelope


class GuardUnavailable(GatewayError):
    status_code = 503
    default_code = "guard_unavailable"


class AuthenticationFailed(GatewayError):
    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class ModelNotFound(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model '{model}' does not exist or is not served by this gateway.", param="model"
        )


class ResponseNotFound(GatewayError):
    """The one answer for a response (or conversation) id the caller may not use: one that does not
    exist, one this gateway never made, and another tenant's all read the same, so ids cannot be probed."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"

    def __init__(self, param: str = "response_id", why: str | None = None) -> None:
        super().__init__(why or f"No response found with the id given in '{param}'.", param=param)


class RouteNotFound(GatewayError):
    error_type = "invalid_request_error"

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message, code="not_found" if status_code == 404 else "method_not_allowed")
        self.status_code = status_code


class RateLimiterUnavailable(GatewayError):
    status_code = 503
    default_code = "rate_limiter_unavailable"


class ResponseStoreUnavailable(GatewayError):
    status_code = 503
    default_code = "response_store_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "This gateway cannot check who owns response ids right now (its Redis is unavailable); "
            "please try again shortly."
        )


class ServerBusy(GatewayError):
    status_code = 503
    default_code = "server_busy"


class ShuttingDown(GatewayError):
    status_code = 503
    default_code = "server_shutting_down"


class UpstreamError(GatewayError):
    error_type = "upstream_error"


class UpstreamUnreachable(UpstreamError):
    status_code = 502
    default_code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    default_code = "upstream_timeout"


class UpstreamStreamBroken(UpstreamError):
    status_code = 502
    default_code = "upstream_stream_broken"


class UpstreamEventTooLarge(UpstreamStreamBroken):
    default_code = "upstream_event_too_large"


class UpstreamBadResponse(UpstreamError):
    status_code = 502
    default_code = "upstream_bad_response"


class ClientDisconnected(GatewayError):
    """Raised instead of a response nobody would read; counted and logged like any other status."""

    status_code = 499  # nginx's "client closed request"
    error_type = "invalid_request_error"
    default_code = "client_disconnected"


class UpstreamStatus(UpstreamError):
    """The upstream answered with an error status; its body is kept when it already is an envelope."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self._upstream_envelope = _as_envelope(body)
        message = (
            self._upstream_envelope["error"].get("message") or ""
            if self._upstream_envelope
            else body.decode("utf-8", "replace")[:2000].strip()
        )
        super().__init__(message or f"The upstream answered with HTTP {status_code}.", code=status_code)

    def envelope(self) -> dict[str, Any]:
        return self._upstream_envelope or super().envelope()


def _as_envelope(body: bytes) -> dict[str, Any] | None:
    """The upstream body if it is already OpenAI's envelope, else None."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict) and "message" in decoded["error"]:
        error = decoded["error"]
        return {
            "error": {
                "message": str(error.get("message")),
                "type": error.get("type") or "upstream_error",
                "param": error.get("param"),
                "code": error.get("code"),
            }
        }
    return None


def encode_error(error: GatewayError) -> bytes:
    return msgspec.json.encode(error.envelope())
