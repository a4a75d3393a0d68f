from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from switchyard.gateway import serving
from switchyard.gateway.embeddings import EmbeddingsRequest, EmbeddingsResponse
from switchyard.gateway.openapi import EMBEDDING_ERRORS

router = APIRouter()


@router.post(
    "/v1/embeddings",
    summary="Create embeddings (OpenAI-compatible): vectors of the texts, from the embedding model named",
    responses={200: {"model": EmbeddingsResponse, "description": "The vectors"}, **EMBEDDING_ERRORS},
    openapi_extra=serving.schema_of(EmbeddingsRequest),
)
async def create_embeddings(request: Request) -> Response:
    return await serving.serve_embeddings(request)
