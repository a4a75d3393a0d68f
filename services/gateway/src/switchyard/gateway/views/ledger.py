"""The ledger's checkpoints, proofs and digests over HTTP, answered by the audit service over NATS
request/reply.

A tenant gets inclusion proofs for its own entries only, and only a key that may read the ledger (`audit:read`
or `admin`, README "Organisations, users, keys and roles"): a proof carries the entry. The same holds for
digests: the keyed digest of a text under the caller's tenant's key, checked against the tenant's own
entries (whoever may compute them can confirm a guessed prompt). Checkpoints and consistency proofs carry
only sizes and hashes, so any authenticated key may have them, whatever its scopes.
"""

from __future__ import annotations

import nats
import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from switchyard.common import subjects
from switchyard.common.ledger_rpc import (
    MAX_SEQ,
    CheckpointDocument,
    CheckpointRequest,
    ConsistencyProof,
    ConsistencyRequest,
    DigestReply,
    DigestRequest,
    InclusionProof,
    InclusionRequest,
)
from switchyard.gateway.access import roles
from switchyard.gateway.auth import authenticate
from switchyard.gateway.errors import (
    APIError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
)
from switchyard.gateway.state import Gateway, gateway_of

router = APIRouter()
RPC_TIMEOUT_S = 10.0
LEDGER_READ = (roles.AUDIT_READ, roles.ADMIN)


class Forbidden(APIError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class ProofUnavailable(APIError):
    status = 409
    type = "invalid_request_error"
    code = "proof_unavailable"


class KeyErased(APIError):
    status = 410
    type = "invalid_request_error"
    code = "key_erased"


ERRORS: dict[str, type[APIError]] = {
    "not_found": NotFound,
    "forbidden": Forbidden,
    "proof_unavailable": ProofUnavailable,
    "invalid_request": InvalidRequest,
    "key_erased": KeyErased,
}


async def _ask(gw: Gateway, subject: str, request: BaseModel) -> Response:
    try:
        reply = await gw.nc.request(subject, request.model_dump_json().encode(), timeout=RPC_TIMEOUT_S)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
        raise ServiceUnavailable("the audit service is not answering; try again shortly") from exc
    body = orjson.loads(reply.data)
    error = body.get("error") if isinstance(body, dict) else None
    if error is not None:
        raise ERRORS.get(error.get("code"), APIError)(str(error.get("message", "ledger request failed")))
    return Response(reply.data, media_type="application/json")


@router.get(
    "/v1/ledger/checkpoint", response_model=CheckpointDocument, summary="The latest signed checkpoint"
)
async def checkpoint(request: Request, tree_size: int | None = Query(None, ge=1, le=MAX_SEQ)) -> Response:
    gw = gateway_of(request)
    await authenticate(request, gw.verifier, scope=None)
    return await _ask(gw, subjects.LEDGER_RPC_CHECKPOINT, CheckpointRequest(tree_size=tree_size))


@router.get("/v1/ledger/proof/inclusion", response_model=InclusionProof, summary="Prove one of your entries")
async def inclusion(
    request: Request,
    seq: int = Query(ge=1, le=MAX_SEQ),
    tree_size: int | None = Query(None, ge=1, le=MAX_SEQ),
) -> Response:
    gw = gateway_of(request)
    tenant_id = await _ledger_reader(request, gw)
    ask = InclusionRequest(seq=seq, tree_size=tree_size, tenant_id=tenant_id)
    return await _ask(gw, subjects.LEDGER_RPC_INCLUSION, ask)


async def _ledger_reader(request: Request, gw: Gateway) -> str:
    """The caller's tenant, when its key may read the ledger's entries."""
    principal = await authenticate(request, gw.verifier, scope=None)
    if not any(principal.can(scope) for scope in LEDGER_READ):
        raise PermissionDenied(f"reading the ledger's entries needs one of the scopes {list(LEDGER_READ)}")
    return principal.tenant_id


class DigestBody(BaseModel):
    """Exactly one of `text`, `input` and `vectors_sha256`; `seq` to check an entry."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, description="a prompt: its messages' texts joined by a newline")
    input: list[str] | None = Field(default=None, min_length=1, description="an embedding request's inputs")
    vectors_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of an embedding's f32le vectors"
    )
    seq: int | None = Field(default=None, ge=1, le=MAX_SEQ, strict=True, description="your entry to check")


@router.post(
    "/v1/ledger/digest",
    response_model=DigestReply,
    summary="Your organisation's keyed digest of a prompt, or whether one of your entries holds it",
)
async def digest(body: DigestBody, request: Request) -> Response:
    gw = gateway_of(request)
    tenant_id = await _ledger_reader(request, gw)
    try:
        ask = DigestRequest(tenant_id=tenant_id, **body.model_dump(exclude_none=True))
    except ValueError as exc:  # not exactly one content field (pydantic's message names the rule)
        raise InvalidRequest("give exactly one of text, input and vectors_sha256") from exc
    return await _ask(gw, subjects.LEDGER_RPC_DIGEST, ask)


@router.get(
    "/v1/ledger/proof/consistency", response_model=ConsistencyProof, summary="Prove the log only grew"
)
async def consistency(
    request: Request,
    first: int = Query(alias="from", ge=1, le=MAX_SEQ),
    second: int | None = Query(None, alias="to", ge=1, le=MAX_SEQ),
) -> Response:
    gw = gateway_of(request)
    await authenticate(request, gw.verifier, scope=None)
    return await _ask(gw, subjects.LEDGER_RPC_CONSISTENCY, ConsistencyRequest(first=first, second=second))
