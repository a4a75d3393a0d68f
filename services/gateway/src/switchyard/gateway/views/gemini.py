"""The Gemini face (`gemini/`): Google's `models/{model}:method` endpoints under `/v1beta` (the Gemini CLI's
and the REST reference's) and `/v1` (the Python GenAI SDK's default), and the models list under
`/v1beta/models` (under `/v1/models` with a Google SDK's header: `views/models.py`)."""

from __future__ import annotations

import functools
import time
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from switchyard.common.documents import document_tokens
from switchyard.common.events import TaskCompleted
from switchyard.common.media_tokens import MediaRule, image_tokens
from switchyard.common.policy import Policy
from switchyard.common.tokens import COUNT_INLINE_BYTES, count_prompt_off_loop
from switchyard.gateway import bodies, bounds, faces, keepalive, serving
from switchyard.gateway.auth import authenticate
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.embeddings import Embeddings, Rows
from switchyard.gateway.errors import InvalidRequest, NotFound, request_id_of
from switchyard.gateway.gemini import render
from switchyard.gateway.gemini.request import (
    Parsed,
    model_name,
    parse_count_request,
    parse_embeddings,
    parse_request,
)
from switchyard.gateway.key_policy import allowed_models
from switchyard.gateway.openapi import GOOGLE_ERRORS
from switchyard.gateway.schemas import ChatCompletionRequest
from switchyard.gateway.state import Gateway, gateway_of

router = APIRouter()

GENERATE = ("generateContent", "streamGenerateContent")
EMBED = ("embedContent", "batchEmbedContents")
METHODS = (*GENERATE, "countTokens", *EMBED)
PAGE = 50  # Gemini's default page size
GEMINI_MEDIA = MediaRule("gemini")
SUMMARY = (
    "Gemini API (Google GenAI SDKs, the Gemini CLI): `models/{model}:generateContent`, "
    ":streamGenerateContent (`alt=sse`, or a JSON array), :countTokens, :embedContent, :batchEmbedContents; "
    "`x-goog-api-key` (or `?key=`). `{model}`: `auto`, a Switchyard model id, an alias, or a bare Gemini "
    "name (the gemini provider's model)"
)


class _Face:
    """One request's Gemini face: its path's model, whether it streams and how, and whether the client
    asked to see the model's thoughts (read with the body)."""

    def __init__(self, model: str, *, stream: bool, sse: bool, request_id: str) -> None:
        self.model, self.streams, self.sse = model, stream, sse
        self.request_id = request_id  # a stream's error event carries it, as an error response does
        self.thoughts = False

    def face(self) -> faces.Face:
        return faces.Face(self.parse, self.render, self.stream, beat=keepalive.BLANK)

    def parse(self, body: bytes, *, max_prompt_chars: int) -> ChatCompletionRequest:
        parsed: Parsed = parse_request(
            body, model=self.model, stream=self.streams, max_prompt_chars=max_prompt_chars
        )
        self.thoughts = parsed.thoughts
        return parsed.request

    def render(self, task: Any, done: TaskCompleted) -> bytes:
        return render.response_json(task, done, thoughts=self.thoughts)

    def stream(self, task: Any, head: Any, rest: Any, *, timeout_s: float, include_usage: bool = True) -> Any:
        return render.stream_events(
            task,
            head,
            rest,
            timeout_s=timeout_s,
            thoughts=self.thoughts,
            sse=self.sse,
            request_id=self.request_id,
        )


def _embeddings_face(model: str, path_model: str, *, batch: bool) -> serving.EmbeddingsFace:
    def parse(body: bytes, settings: GatewaySettings) -> Embeddings:
        return parse_embeddings(
            body, model=model, path_model=path_model, batch=batch, max_prompt_chars=settings.max_prompt_chars
        )

    def vectors(rows: Rows, done: TaskCompleted, parsed: Embeddings) -> bytes:
        values = [{"values": row} for row in rows]
        body = {"embeddings": values} if batch else {"embedding": values[0]}
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

    return serving.EmbeddingsFace(parse, vectors)


@router.post("/v1beta/models/{target:path}", summary=SUMMARY, responses=GOOGLE_ERRORS)
@router.post("/v1/models/{target:path}", summary=SUMMARY, responses=GOOGLE_ERRORS, include_in_schema=False)
async def call_method(target: str, request: Request) -> Response:
    name, colon, method = target.rpartition(":")
    if not colon or method not in METHODS:
        raise NotFound(
            f"no Gemini method {target!r}: models/{{model}}:{', :'.join(METHODS)} are served",
            code="method_not_found",
        )
    gw = gateway_of(request)
    model = model_name(name, gw.catalog.policy.aliases)
    if method in EMBED:
        return await serving.serve_embeddings(
            request, _embeddings_face(model, name, batch=method == EMBED[1])
        )
    if method == "countTokens":
        return await _count_tokens(request, gw, model)
    sse = request.query_params.get("alt") == "sse"
    streams = method == "streamGenerateContent"
    face = _Face(model, stream=streams, sse=sse, request_id=request_id_of(request))
    response = await serving.serve(request, face.face())
    if face.streams and not sse and response.media_type == "text/event-stream":
        response.headers["content-type"] = "application/json"  # a JSON array, streamed
    return response


async def _count_tokens(request: Request, gw: Gateway, model: str) -> Response:
    """`countTokens`: Switchyard's estimate (cl100k_base over the system instruction, the contents, their
    function calls and the declarations; images and PDFs by Gemini's documented rules, each modality in
    `promptTokensDetails`). Runs no task; counts have a window of their own per user, as the Anthropic
    face's."""
    principal = await authenticate(request, gw.verifier)
    if gw.admission.limiter is not None:
        await gw.admission.limiter.admit_count(principal, now=time.time())
    async with gw.intake.taking(request):  # the body's bytes, up to its count
        body = await bodies.read_request_body(request, gw.settings)
        chat = await bounds.read_off_loop(
            functools.partial(parse_count_request, body, model=model), size=len(body)
        )
        await gw.catalog.check(model, allowed=allowed_models(principal.key_policy))
        tokens = await count_prompt_off_loop(chat, large=len(body) > COUNT_INLINE_BYTES, media=GEMINI_MEDIA)
        pictures = image_tokens(chat.messages, GEMINI_MEDIA)
        pdfs = document_tokens(chat.messages, per_page=GEMINI_MEDIA.page())
        media = [("IMAGE", pictures), ("DOCUMENT", pdfs)]
        details = [{"modality": "TEXT", "tokenCount": tokens - pictures - pdfs}]
        details += [{"modality": kind, "tokenCount": n} for kind, n in media if n]
    content = orjson.dumps({"totalTokens": tokens, "promptTokensDetails": details})
    return Response(content, media_type="application/json")


@router.get("/v1beta/models", summary="List the models (Gemini's shape and paging)", responses=GOOGLE_ERRORS)
async def list_models(
    request: Request,
    page_size: int | None = Query(default=None, alias="pageSize", ge=1, le=1000),
    page_token: str | None = Query(default=None, alias="pageToken"),
) -> Response:
    return await models_page(request, page_size=page_size, page_token=page_token)


@router.get("/v1beta/models/{model:path}", summary="One model (Gemini's shape)", responses=GOOGLE_ERRORS)
async def get_model(model: str, request: Request) -> Response:
    return await model_info(request, model)


async def models_page(request: Request, *, page_size: int | None, page_token: str | None) -> Response:
    """The models the key may use, in Gemini's shape: a page of `pageSize` (50) after `pageToken` (the
    `nextPageToken` of the page before)."""
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    infos = await gw.catalog.infos(allowed=allowed_models(principal.key_policy), embeddings=True)
    start = 0
    if page_token:
        ids = [info.id for info in infos]
        if page_token not in ids:
            raise InvalidRequest("pageToken is not a page of this list", param="pageToken")
        start = ids.index(page_token) + 1
    size = page_size or PAGE
    page = infos[start : start + size]
    policy = gw.catalog.policy
    body: dict[str, Any] = {"models": [render.model_json(i, embeds=_embeds(policy, i.id)) for i in page]}
    if start + size < len(infos):
        body["nextPageToken"] = page[-1].id
    return Response(orjson.dumps(body), media_type="application/json")


async def model_info(request: Request, model: str) -> Response:
    """One model in Gemini's shape (`models/` before its name optional; an alias answers as its model)."""
    gw = gateway_of(request)
    principal = await authenticate(request, gw.verifier)
    name = model_name(model, gw.catalog.policy.aliases)
    info = await gw.catalog.info(name, allowed=allowed_models(principal.key_policy), embeddings=True)
    body = render.model_json(info, embeds=_embeds(gw.catalog.policy, info.id))
    return Response(orjson.dumps(body), media_type="application/json")


def _embeds(policy: Policy, model: str) -> bool:
    spec = policy.model(model)
    return spec is not None and spec.embeds
