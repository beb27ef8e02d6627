"""POST /v1/moderations: OpenAI's moderation API, backed by the tenant's input guards."""

from __future__ import annotations

from typing import Any

from litestar import Request, post

from gateway.auth import Tenant
from gateway.guarded.guardrails import Guardrails
from gateway.guarded.moderation import moderate, moderation_inputs
from gateway.limits import LimitsSettings, check_input_budget
from gateway.openapi.contract import contract
from gateway.protocol import read_json_object
from gateway.rate_limit.middleware import RATE_LIMITED


@post(
    "/v1/moderations",
    status_code=200,
    summary="Moderate text with the tenant's input guards (OpenAI's moderation shape)",
    tags=["guards"],
    opt={RATE_LIMITED: True}
    | contract(request="ModerationRequest", responses={200: "Moderation"}, errors=(400, 401, 413, 503)),
)
async def moderations(
    request: Request[Any, Any, Any], guardrails: Guardrails, tenant: Tenant, limits: LimitsSettings
) -> dict[str, Any]:
    raw = await read_json_object(await request.body(), limits.max_json_depth)
    check_input_budget(moderation_inputs(raw), limits, "input")
    return await moderate(guardrails, tenant.name, raw)
