"""Ledger requests, core NATS request/reply on `switchyard.ledger.rpc.*`, answered by audit.

Requests and replies are plain JSON (not CloudEvents). A reply is either the document asked for (a
checkpoint, an inclusion or a consistency proof, formats in services/audit/README.md; a digest) or
`{"error": {"code": "...", "message": "..."}}` with code `not_found`, `forbidden`, `proof_unavailable`,
`key_erased` or `invalid_request`. Numbers are JSON integers (strict: `true` or `"5"` is no sequence).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

MAX_SEQ = 2**63 - 1  # a ledger sequence is a database BIGINT; a larger number is no entry (and SQLite raised)


def _tenant() -> Any:
    return Field(min_length=1, max_length=64, description="the tenant whose entries alone are answered")


class CheckpointRequest(BaseModel):
    tree_size: StrictInt | None = Field(
        default=None, ge=1, le=MAX_SEQ, description="a checkpoint's size; default: the latest"
    )


class InclusionRequest(BaseModel):
    seq: StrictInt = Field(
        ge=1, le=MAX_SEQ, description="the entry's sequence number (its leaf index is seq - 1)"
    )
    tree_size: StrictInt | None = Field(
        default=None, ge=1, le=MAX_SEQ, description="the checkpoint to prove against"
    )
    # Required: a proof carries the entry, so it is answered only for the tenant the entry belongs to (the
    # operator's CLI, which reads the database, proves any entry).
    tenant_id: str = _tenant()


class ConsistencyRequest(BaseModel):
    first: StrictInt = Field(ge=1, le=MAX_SEQ, description="the older checkpoint's size")
    second: StrictInt | None = Field(
        default=None, ge=1, le=MAX_SEQ, description="the newer checkpoint's size; default: latest"
    )


class DigestRequest(BaseModel):
    """A tenant's keyed digest of some content, as its ledger entries hold it; with `seq`, whether entry
    `seq` (the tenant's own) holds that digest. Exactly one of `text`, `input` and `vectors_sha256`."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str = _tenant()
    text: str | None = Field(
        default=None, description="a prompt: its messages' texts joined by a newline (`prompt_hmac_sha256`)"
    )
    input: list[str] | None = Field(
        default=None, min_length=1, description="an embedding request's inputs (`input_hmac_sha256`)"
    )
    vectors_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="hex SHA-256 of an embedding's raw f32le vectors (`embedding.hmac_sha256`)",
    )
    seq: StrictInt | None = Field(default=None, ge=1, le=MAX_SEQ, description="the entry to check against")

    @model_validator(mode="after")
    def _one_content(self) -> DigestRequest:
        given = [n for n in ("text", "input", "vectors_sha256") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of text, input and vectors_sha256")
        return self


class DigestReply(BaseModel):
    format: Literal["switchyard.ledger.digest.v1"]
    tenant_id: str
    field: str = Field(description="the details field that holds this digest, e.g. prompt_hmac_sha256")
    algorithm: Literal["hmac-sha256", "sha256"] = Field(
        description="hmac-sha256 under the tenant's key; sha256 for an entry written before keyed digests"
    )
    digest: str = Field(description="hex")
    seq: int | None = Field(default=None, description="the entry checked, when one was asked for")
    action: str | None = Field(default=None, description="that entry's action")
    matches: bool | None = Field(default=None, description="whether that entry holds this digest")


class RpcError(BaseModel):
    code: str
    message: str


class RpcErrorReply(BaseModel):
    error: RpcError


class CheckpointDocument(BaseModel):
    format: str = Field(description="switchyard.ledger.checkpoint.v1")
    origin: str
    tree_size: int
    root_hash: str = Field(description="hex SHA-256 Merkle root (RFC 6962 MTH) of entries 1..tree_size")
    time: str
    verifier_key: str = Field(description="C2SP signed-note verifier key: <name>+<key id hex>+<base64 key>")
    note: str = Field(description="the C2SP tlog-checkpoint signed note, Ed25519")


class InclusionProof(BaseModel):
    format: str = Field(description="switchyard.ledger.inclusion.v1")
    seq: int
    leaf_index: int
    tenant_id: str
    entry: str = Field(description="base64 of the entry bytes; leaf hash = SHA-256(0x00 || entry)")
    leaf_hash: str
    tree_size: int
    proof: list[str] = Field(description="hex hashes, RFC 6962 audit path, bottom up")
    checkpoint: CheckpointDocument


class ConsistencyProof(BaseModel):
    format: str = Field(description="switchyard.ledger.consistency.v1")
    first: CheckpointDocument
    second: CheckpointDocument
    proof: list[str] = Field(description="hex hashes, RFC 6962 consistency proof")
