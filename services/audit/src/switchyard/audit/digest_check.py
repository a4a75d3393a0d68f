"""A tenant's auditor checks content against the ledger: the keyed digest of a text (or an embedding's
inputs or vectors) under the tenant's key, and whether one of the tenant's entries holds it.

Only the tenant's own entries are checked and only its own key is used; the key is read from the database
each time (an erased one is never used). An entry written before keyed digests holds a plain SHA-256
(`prompt_sha256`, ...): it is checked as such, and the answer says `"algorithm": "sha256"`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit import digests
from switchyard.audit.digests import TenantKey, TenantKeys
from switchyard.audit.models import LedgerEntry
from switchyard.audit.proofs import Forbidden, NotFound
from switchyard.common.errors import SwitchyardError
from switchyard.common.ledger_rpc import DigestRequest

FORMAT = "switchyard.ledger.digest.v1"


class NoDigest(SwitchyardError):
    code = "invalid_request"


def _content(request: DigestRequest) -> tuple[str, bytes, str]:
    """(the keyed field, the bytes it covers, what the content is, for messages)."""
    if request.text is not None:
        return digests.PROMPT, digests.prompt_bytes(request.text), "prompt"
    if request.input is not None:
        return digests.INPUT, digests.inputs_bytes(request.input), "embedding input"
    assert request.vectors_sha256 is not None
    return digests.VECTORS, digests.vectors_bytes(request.vectors_sha256), "embedding vectors"


def _stored(details: dict[str, Any], keyed_field: str) -> tuple[str, str] | None:
    """(field, digest) the entry holds for this kind of content: keyed, else the legacy SHA-256."""
    holder = details.get("embedding") if keyed_field == digests.VECTORS else details
    if not isinstance(holder, dict):
        return None
    for name in (keyed_field, digests.LEGACY[keyed_field]):
        value = holder.get(name)
        if isinstance(value, str):
            return name, value
    return None


def _plain(keyed_field: str, data: bytes) -> str:
    # A legacy `embedding.sha256` is the vectors' SHA-256 itself: what the caller gave, as bytes.
    return data.hex() if keyed_field == digests.VECTORS else hashlib.sha256(data).hexdigest()


def _shown(field: str) -> str:
    return f"embedding.{field}" if field in (digests.VECTORS, digests.LEGACY[digests.VECTORS]) else field


async def _key(keys: TenantKeys, tenant_id: str) -> TenantKey:
    key = await keys.for_check(tenant_id)
    if key is None:
        raise NotFound(f"tenant {tenant_id} has no digest key yet: none of its entries holds a keyed digest")
    return key


async def check(
    sessions: async_sessionmaker[AsyncSession], keys: TenantKeys, request: DigestRequest
) -> dict[str, Any]:
    keyed_field, data, what = _content(request)
    tenant = request.tenant_id
    if request.seq is None:
        return {
            "format": FORMAT,
            "tenant_id": tenant,
            "field": _shown(keyed_field),
            "algorithm": digests.ALGORITHM,
            "digest": digests.keyed(await _key(keys, tenant), data),
        }
    async with sessions() as session:
        row = (
            await session.execute(
                select(LedgerEntry.tenant_id, LedgerEntry.action, LedgerEntry.details).where(
                    LedgerEntry.seq == request.seq
                )
            )
        ).first()
    if row is None:
        raise NotFound(f"no entry {request.seq}")
    if row.tenant_id != tenant:
        raise Forbidden(f"entry {request.seq} belongs to another tenant")
    stored = _stored(orjson.loads(row.details), keyed_field)
    if stored is None:
        raise NoDigest(f"entry {request.seq} ({row.action}) holds no {what} digest")
    name, held = stored
    if name == keyed_field:
        digest, algorithm = digests.keyed(await _key(keys, tenant), data), digests.ALGORITHM
    else:
        digest, algorithm = _plain(keyed_field, data), "sha256"
    return {
        "format": FORMAT,
        "tenant_id": tenant,
        "field": _shown(name) if keyed_field == digests.VECTORS else name,
        "algorithm": algorithm,
        "digest": digest,
        "seq": request.seq,
        "action": row.action,
        "matches": hmac.compare_digest(digest, held),
    }
