"""GET /v1/models: the union of what every upstream serves."""

from __future__ import annotations

from typing import Any

from litestar import get

from gateway.auth import Tenant
from gateway.openapi.contract import contract
from gateway.relay.proxy import Proxy


@get(
    "/v1/models",
    summary="List the models every upstream serves",
    tags=["models"],
    opt=contract(responses={200: "ModelList"}, errors=(401,)),
)
async def list_models(proxy: Proxy, tenant: Tenant) -> dict[str, Any]:
    return {"object": "list", "data": proxy.pool.model_cards()}


@get(
    "/v1/models/{model_id:path}",
    summary="Retrieve one model",
    tags=["models"],
    opt=contract(responses={200: "Model"}, errors=(401, 404)),
)
async def retrieve_model(model_id: str, proxy: Proxy, tenant: Tenant) -> dict[str, Any]:
    model = model_id.lstrip("/")
    await proxy.pool.route(model)  # raises model_not_found
    return next(card for card in proxy.pool.model_cards() if card["id"] == model)
