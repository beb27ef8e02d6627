"""JSON schemas of the gateway's wire shapes, for its OpenAPI document (OpenAPI 3.1 is JSON Schema).

Requests come from the msgspec structs the gateway checks them with, narrowed by the checks its code makes
by hand (a non-empty ``messages``, ``n`` of at least 1, ...), so the document follows the checks. Objects
stay open: fields the gateway does not read reach the upstream as sent. Answers are OpenAI's shapes as
the gateway returns them: the upstream's JSON, plus the gateway's ``guardrails`` report.
"""

from __future__ import annotations

from typing import Any

import msgspec

from feedback.events import GuardrailsReport
from feedback.labelstudio.receiver import ACTIONS_WITH_ANNOTATION as _ANNOTATED
from feedback.labelstudio.receiver import DELETED as _DELETED
from gateway.errors import ErrorEnvelope
from gateway.guarded.sources import _RequestSource
from gateway.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from gateway.routes.feedback import FeedbackRequest
from guards.policy import RequestGuardrails

_REF = "#/components/schemas/{name}"
_RENAMED = {"_RequestSource": "Source"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _map_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": schema}


_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_NUMBER = {"type": "number"}
_TEXT_OR_TOKENS = {
    "description": "A string, or an array of strings, of token ids, or of token-id arrays.",
    "anyOf": [
        _STRING,
        {"type": "array", "items": _STRING},
        {"type": "array", "items": _INTEGER},
        {"type": "array", "items": {"type": "array", "items": _INTEGER}},
    ],
}
_GUARDRAILS_FIELD = {
    **ref("RequestGuardrails"),
    "description": "The gateway's extension: make the tenant's policy stricter for this request (never "
    "looser). Removed before the upstream.",
}


def _struct_schemas() -> dict[str, Any]:
    """The structs' schemas, under the names the document uses."""
    structs = [ChatCompletionRequest, CompletionRequest, EmbeddingRequest, FeedbackRequest]
    structs += [RequestGuardrails, _RequestSource, ErrorEnvelope]
    structs += [GuardrailsReport]  # the report's own structs: the document cannot drift from the wire
    _, components = msgspec.json.schema_components(structs, ref_template=_REF)
    encoded = msgspec.json.encode(components).decode()
    for old, new in _RENAMED.items():
        encoded = encoded.replace(f'"{old}"', f'"{new}"').replace(f"/{old}", f"/{new}")
    schemas: dict[str, Any] = msgspec.json.decode(encoded)
    return schemas


def _requests(schemas: dict[str, Any]) -> None:
    """What the handlers check beyond the structs' types, and the extension fields."""
    chat = schemas["ChatCompletionRequest"]
    chat["required"] = ["model", "messages"]
    chat["properties"]["messages"]["minItems"] = 1
    chat["properties"]["guardrails"] = _GUARDRAILS_FIELD
    chat["properties"]["sources"] = {
        "type": "array",
        "items": ref("Source"),
        "description": "The gateway's extension: documents the answer should rest on, for the grounding "
        "guard; `[1]` in an answer cites the first. Removed before the upstream.",
    }
    schemas["ChatMessage"]["properties"]["content"] = _nullable(
        {"anyOf": [_STRING, {"type": "array", "items": ref("ContentPart")}]}
    )
    schemas["ContentPart"] = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": _STRING, "text": _STRING},
        "description": "A content part: `text` is read (and guarded) in parts of type `text`.",
    }
    legacy = schemas["CompletionRequest"]
    legacy["required"] = ["model", "prompt"]
    legacy["properties"]["prompt"] = _TEXT_OR_TOKENS
    legacy["properties"]["guardrails"] = _GUARDRAILS_FIELD
    for sampling in (chat, legacy):
        sampling["properties"]["n"] = _nullable({"type": "integer", "minimum": 1})
        sampling["properties"]["max_tokens"] = _nullable({"type": "integer", "minimum": 1})
    embedding = schemas["EmbeddingRequest"]
    embedding["properties"]["input"] = _TEXT_OR_TOKENS
    embedding["properties"]["guardrails"] = _GUARDRAILS_FIELD
    feedback = schemas["FeedbackRequest"]
    feedback["properties"]["preferred_choice"] = _nullable({"type": "integer", "minimum": 0})
    feedback["properties"]["comment"] = _nullable({"type": "string", "maxLength": 4000})
    feedback["description"] = "Send `rating`, `preferred_choice`, or both."
    schemas["ModerationRequest"] = {
        "type": "object",
        "required": ["input"],
        "properties": {
            "model": _STRING,
            "input": {
                "anyOf": [
                    _STRING,
                    {"type": "array", "minItems": 1, "items": {"anyOf": [_STRING, ref("TextPart")]}},
                ]
            },
            "guardrails": _GUARDRAILS_FIELD,
        },
    }
    schemas["TextPart"] = {
        "type": "object",
        "required": ["type", "text"],
        "properties": {"type": {"const": "text"}, "text": _STRING},
    }
    schemas["ResponseCreateRequest"] = {
        "type": "object",
        "required": ["model", "input"],
        "description": "OpenAI's Responses API request, served through chat completions: see docs/api.md "
        "(The Responses API) for which fields translate and which get a 400.",
        "properties": {
            "model": _STRING,
            "instructions": _nullable(_STRING),
            "input": {"anyOf": [_STRING, {"type": "array", "items": {"type": "object"}}]},
            "stream": _nullable({"type": "boolean"}),
            "max_output_tokens": _nullable({"type": "integer", "minimum": 1}),
            "tools": _nullable({"type": "array", "items": {"type": "object"}}),
            "guardrails": _GUARDRAILS_FIELD,
        },
    }
    schemas["LabelStudioEvent"] = _labelstudio_event()
    error = schemas["ErrorBody"]
    error["properties"]["guardrails"] = {
        **ref("GuardrailsReport"),
        "description": "With `code: content_filter`: which guard blocked the request, and why.",
    }


def _labelstudio_event() -> dict[str, Any]:
    """Label Studio's webhook call. Which fields it needs depends on its action; other actions (a webhook
    set up by hand for more events) are answered as ignored."""

    def when(actions: list[str], then: dict[str, Any]) -> dict[str, Any]:
        condition = {"required": ["action"], "properties": {"action": {"enum": actions}}}
        return {"if": condition, "then": {"required": sorted(then), "properties": then}}

    # What is inside is checked per annotation: one that fails is stored as rejected (outcome "rejected").
    task = {"type": "object", "description": "The task; `data.hhh_task_key` names the gateway's ranking."}
    return {
        "type": "object",
        "required": ["action"],
        "properties": {"action": {"anyOf": [{"enum": [*_ANNOTATED, _DELETED]}, _STRING]}},  # an open enum
        "allOf": [
            when(list(_ANNOTATED), {"annotation": {"type": "object"}, "task": task}),
            when([_DELETED], {"annotations": {"type": "array"}}),
        ],
    }


def _answers() -> dict[str, Any]:
    usage = {
        "type": "object",
        "properties": {"prompt_tokens": _INTEGER, "completion_tokens": _INTEGER, "total_tokens": _INTEGER},
    }
    message = {
        "type": "object",
        "properties": {
            "role": _STRING,
            "content": _nullable(_STRING),
            "refusal": _nullable(_STRING),
            "tool_calls": _nullable({"type": "array", "items": {"type": "object"}}),
        },
    }

    def completion(choice: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["id", "choices"],
            "properties": {
                "id": _STRING,
                "object": _STRING,
                "created": _INTEGER,
                "model": _STRING,
                "choices": {"type": "array", "items": choice},
                "usage": _nullable(ref("Usage")),
                "guardrails": ref("GuardrailsReport"),
            },
        }

    choice = {
        "index": _INTEGER,
        "finish_reason": _nullable(_STRING),
        "logprobs": _nullable({"type": "object"}),
    }
    model = {
        "type": "object",
        "required": ["id", "object"],
        "properties": {"id": _STRING, "object": {"const": "model"}, "created": _INTEGER, "owned_by": _STRING},
    }
    return {
        "Usage": usage,
        "ChatCompletion": completion(
            {"type": "object", "required": ["index"], "properties": {**choice, "message": message}}
        ),
        "TextCompletion": completion(
            {"type": "object", "required": ["index"], "properties": {**choice, "text": _STRING}}
        ),
        "Response": {
            "type": "object",
            "required": ["id", "object", "status", "output"],
            "description": "OpenAI's Response object (the Responses API), made from the chat answer; "
            "`incomplete_details.reason` is `content_filter` when an output guard blocked or cut it.",
            "properties": {
                "id": _STRING,
                "object": {"const": "response"},
                "created_at": _NUMBER,
                "status": {"enum": ["completed", "incomplete", "failed"]},
                "model": _STRING,
                "output": {"type": "array", "items": {"type": "object"}},
                "incomplete_details": _nullable({"type": "object"}),
                "usage": _nullable({"type": "object"}),
                "guardrails": ref("GuardrailsReport"),
            },
        },
        "EmbeddingList": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "object": _STRING,
                "model": _STRING,
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": _INTEGER,
                            "embedding": {"anyOf": [{"type": "array", "items": _NUMBER}, _STRING]},
                        },
                    },
                },
                "usage": ref("Usage"),
            },
        },
        "Moderation": {
            "type": "object",
            "required": ["id", "model", "results"],
            "properties": {
                "id": _STRING,
                "model": _STRING,
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["flagged", "categories", "category_scores"],
                        "properties": {
                            "flagged": {"type": "boolean"},
                            "categories": _map_of({"type": "boolean"}),
                            "category_scores": _map_of(_NUMBER),
                            "guardrails": ref("StageReport"),
                        },
                    },
                },
            },
        },
        "Model": model,
        "ModelList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": ref("Model")}},
        },
    }


def _operations() -> dict[str, Any]:
    def fixed(**properties: Any) -> dict[str, Any]:
        return {"type": "object", "required": sorted(properties), "properties": properties}

    return {
        "FeedbackRecorded": fixed(id=_STRING, object={"const": "feedback"}, status={"const": "recorded"}),
        "WebhookOutcomes": fixed(object={"const": "labelstudio.webhook"}, outcomes=_map_of(_INTEGER)),
        "StreamEvent": {
            "type": "object",
            "required": ["data"],
            "description": "One server-sent event (OpenAPI 3.1 describes a stream by its events).",
            "properties": {
                "data": {
                    "type": "string",
                    "description": "A JSON chunk (`chat.completion.chunk` or `text_completion`, the "
                    "last carrying the `guardrails` report), an error envelope if the stream fails, then "
                    "`[DONE]`.",
                },
                "event": _STRING,
                "id": _STRING,
            },
        },
        "Health": fixed(status={"const": "ok"}),
        "Readiness": fixed(status={"enum": ["ready", "degraded", "unavailable"]}, upstreams=_map_of(_STRING)),
        "OpenAPIDocument": fixed(openapi=_STRING, info={"type": "object"}, paths={"type": "object"}),
    }


def component_schemas() -> dict[str, Any]:
    schemas = _struct_schemas()
    _requests(schemas)
    schemas.update(_answers())
    schemas.update(_operations())
    return dict(sorted(schemas.items()))
