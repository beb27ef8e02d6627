"""The gateway's OpenAPI document, built from its route handlers.

Each route says what the document should tell of it with a ``Contract`` in its decorator's ``opt``, beside
its summary and tags, so a route and its description change together. The document is served at
``GET /openapi.json`` without a key: it describes only the public, OpenAI-compatible contract and the
gateway's extension fields, never a tenant, a model, a policy or an upstream.

Litestar's own OpenAPI generation stays off (``openapi_config=None``): the handlers read raw bodies (they
forward the client's own JSON), so Litestar could not see their request bodies, and its generated error
responses are not OpenAI's envelope.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from typing import Any

import msgspec
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler

from gateway import __version__
from gateway.openapi.contract import CONTRACT_KEY, Contract, contract
from gateway.openapi.schemas import component_schemas

DOCUMENT_PATH = "/openapi.json"

# Every error status the gateway's own code can answer with, and what it means there.
ERROR_MEANINGS = {
    400: "Invalid request, or blocked by an input guard (`code: content_filter`).",
    401: "Missing, malformed or unknown key.",
    404: "No such model or route.",
    405: "The route does not accept this method.",
    413: "The request body is larger than `server.max_body_bytes`.",
    429: "Rate limited (by the gateway, or an upstream's own 429 relayed).",
    502: "The upstream could not be reached, broke its stream, or answered something that is not JSON.",
    503: "A guard or store is unavailable and its policy fails closed, or the feature is off.",
    504: "The upstream did not answer in time.",
}
_REQUEST_ID = {
    "x-request-id": {
        "description": "The request's id: the client's own `x-request-id`, or one the gateway made.",
        "required": True,
        "schema": {"type": "string"},
    }
}
_PATH_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")


def _success(contract_: Contract, status: int, schema: str) -> dict[str, Any]:
    if contract_.media_type.startswith("text/"):
        content: dict[str, Any] = {contract_.media_type: {"schema": {"type": "string"}}}
    else:
        content = {contract_.media_type: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    if contract_.streams and status == min(contract_.responses):
        content["text/event-stream"] = {"schema": {"$ref": "#/components/schemas/StreamEvent"}}
    return {"description": schema, "headers": _REQUEST_ID, "content": content}


def _operation(handler: HTTPRouteHandler, contract_: Contract, parameters: list[str]) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): _success(contract_, status, schema) for status, schema in contract_.responses.items()
    }
    for status in contract_.errors:
        responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    operation: dict[str, Any] = {
        "operationId": handler.handler_name,
        "summary": handler.summary or "",
        "description": handler.description or inspect.getdoc(handler.fn) or "",
        "tags": list(handler.tags or ()),
        "security": [{contract_.security: []}] if contract_.security else [],
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            for name in parameters
        ]
    if contract_.request:
        schema = {"$ref": f"#/components/schemas/{contract_.request}"}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return operation


def _error_responses() -> dict[str, Any]:
    envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    return {
        f"Error{status}": {"description": meaning, "headers": _REQUEST_ID, "content": envelope}
        for status, meaning in ERROR_MEANINGS.items()
    }


def build_document(handlers: Iterable[HTTPRouteHandler], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every handler that carries a ``Contract``."""
    paths: dict[str, dict[str, Any]] = {}
    for handler in handlers:
        contract_ = handler.opt.get(CONTRACT_KEY)
        if not isinstance(contract_, Contract):
            continue
        for path in sorted(handler.paths):
            template = _PATH_PARAMETER.sub(r"{\1}", path)
            parameters = _PATH_PARAMETER.findall(path)
            for method in sorted(handler.http_methods):
                operation = _operation(handler, contract_, parameters)
                paths.setdefault(template, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "HHH Gateway",
            "version": version,
            "description": "An OpenAI-compatible gateway that guards every request and answer. Requests "
            "and answers are OpenAI's, with two extension fields in requests (`guardrails`, `sources`) and "
            "a `guardrails` report in answers. Fields the gateway does not read reach the upstream as sent.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": component_schemas(),
            "responses": _error_responses(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A gateway key (`hhh keys new`).",
                },
                "webhook_secret": {"type": "apiKey", "in": "header", "name": "X-HHH-Webhook-Secret"},
            },
        },
        "security": [{"bearer": []}],
    }


def openapi_route(handlers: Iterable[HTTPRouteHandler]) -> HTTPRouteHandler:
    """``GET /openapi.json``: the document of ``handlers`` and of itself, built and encoded once, here."""
    document = b""

    @get(
        DOCUMENT_PATH,
        summary="This API's OpenAPI document",
        tags=["operations"],
        opt=contract(responses={200: "OpenAPIDocument"}, security=None),
        sync_to_thread=False,
    )
    def openapi_document() -> Response[bytes]:
        """The OpenAPI 3.1 description of the gateway's routes. Needs no key: it holds no configuration."""
        return Response(document, media_type="application/json")

    document = msgspec.json.encode(build_document([*handlers, openapi_document], __version__))
    return openapi_document
