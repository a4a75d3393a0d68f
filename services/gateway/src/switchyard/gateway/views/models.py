from __future__ import annotations

from fastapi import APIRouter, Request

from switchyard.gateway.auth import authenticate
from switchyard.gateway.key_policy import allowed_models
from switchyard.gateway.openapi import ERRORS
from switchyard.gateway.schemas import ModelCard, ModelList
from switchyard.gateway.state import gateway_of

router = APIRouter()


@router.get(
    "/v1/models",
    response_model=ModelList,
    summary="List the models this deployment serves (those the key's allow-list allows)",
    responses={k: v for k, v in ERRORS.items() if k in (401, 403, 429, 503)},
)
async def list_models(request: Request) -> ModelList:
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    return ModelList(data=await gw.catalog.cards(allowed=allowed_models(principal.key_policy)))


@router.get(
    "/v1/models/{model:path}",
    response_model=ModelCard,
    summary="One model this deployment serves (`auto`, a configured model or a pass-through name)",
    responses={k: v for k, v in ERRORS.items() if k in (401, 403, 404, 429, 503)},
)
async def retrieve_model(model: str, request: Request) -> ModelCard:
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    return await gw.catalog.card(model, allowed=allowed_models(principal.key_policy))
