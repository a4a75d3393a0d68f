from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from switchyard.gateway.auth import authenticate
from switchyard.gateway.errors_faces import speaks_anthropic, speaks_google
from switchyard.gateway.key_policy import allowed_models
from switchyard.gateway.messages import model_name
from switchyard.gateway.model_pages import page_of
from switchyard.gateway.openapi import ERRORS
from switchyard.gateway.schemas import AnthropicModelInfo, AnthropicModelList, ModelCard, ModelList
from switchyard.gateway.state import gateway_of
from switchyard.gateway.views import gemini

router = APIRouter()

ANTHROPIC = (
    "; with an `anthropic-version` header (the Anthropic SDKs), in Anthropic's shape; with `x-goog-api-key` "
    "or `x-goog-api-client` (Google's GenAI SDKs), in Gemini's"
)
PAGING = "Anthropic's paging (with an `anthropic-version` header; ignored without): "


@router.get(
    "/v1/models",
    response_model=ModelList | AnthropicModelList,
    summary=f"List the models this deployment serves (those the key's allow-list allows){ANTHROPIC}",
    responses={k: v for k, v in ERRORS.items() if k in (400, 401, 403, 429, 503)},
)
async def list_models(
    request: Request,
    limit: int | None = Query(default=None, description=f"{PAGING}models per page, 1 to 1000 (20)"),
    after_id: str | None = Query(default=None, description=f"{PAGING}the page right after this model"),
    before_id: str | None = Query(default=None, description=f"{PAGING}the page right before this model"),
    page_size: int | None = Query(
        default=None, alias="pageSize", ge=1, le=1000, description="Gemini's paging"
    ),
    page_token: str | None = Query(default=None, alias="pageToken", description="Gemini's paging"),
) -> ModelList | AnthropicModelList | Response:
    if speaks_google(request):
        return await gemini.models_page(request, page_size=page_size, page_token=page_token)
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    allowed = allowed_models(principal.key_policy)
    if speaks_anthropic(request):
        models = await gw.catalog.infos(allowed=allowed)
        return page_of(models, limit=limit, after_id=after_id, before_id=before_id)
    return ModelList(data=await gw.catalog.cards(allowed=allowed))


@router.get(
    "/v1/models/{model:path}",
    response_model=ModelCard | AnthropicModelInfo,
    summary="One model this deployment serves (`auto`, a configured model or a pass-through name)"
    f"{ANTHROPIC} (an alias answers as its model; a bare name, as POST /v1/messages takes it: "
    "Anthropic's model)",
    responses={k: v for k, v in ERRORS.items() if k in (401, 403, 404, 429, 503)},
)
async def retrieve_model(model: str, request: Request) -> ModelCard | AnthropicModelInfo | Response:
    if speaks_google(request):
        return await gemini.model_info(request, model)
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    allowed = allowed_models(principal.key_policy)
    if speaks_anthropic(request):  # as POST /v1/messages takes the name: a bare one is Anthropic's model
        served = model_name(model, gw.catalog.policy.aliases)
        info = await gw.catalog.info(served, allowed=allowed)
        return info if served == model else info.model_copy(update={"id": model, "display_name": model})
    return await gw.catalog.card(model, allowed=allowed)
