"""Stored answers in JetStream KV (bucket `switchyard-cache`), shared by every gateway replica.

Keys: `a.<tenant>.<hash>` holds a chat `CachedAnswer`, `h.<tenant>.<hash>` its hit count; an embedding answer
is kept under `e.<tenant>.<hash>`, its hit count under `eh.<tenant>.<hash>`, so a chat read never looks where
embeddings are (and the stored value says which it is, checked on every read). The tenant is part of every
key and of the stored value, and a value whose tenant differs from the reader's is never returned.
Each answer carries its own expiry (the TTL of the plan or tenant that kept it), and is read only within the
reader's TTL too; the bucket's max age removes what nobody reads.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from switchyard.common import kv, kv_guard, subjects
from switchyard.gateway.cache.models import CachedAnswer

if TYPE_CHECKING:
    from switchyard.gateway.access.fence import ErasedFence


async def cache_bucket(js: JetStreamContext, *, max_ttl_s: float) -> KeyValue:
    return await kv.bucket(js, subjects.KV_CACHE, ttl_s=max_ttl_s)


async def left_cache(js: JetStreamContext) -> ExactStore | None:
    """The bucket as an earlier configuration left it, for a deployment with the cache off now (an erasure
    still reaches what it holds); None when there is none. Neither created nor reconfigured."""
    try:
        return ExactStore(await js.key_value(subjects.KV_CACHE))
    except BucketNotFoundError:
        return None


def answer_key(tenant_id: str, key: str, *, embedding: bool = False) -> str:
    return f"{'e' if embedding else 'a'}.{kv.safe_key(tenant_id)}.{key}"


def hits_key(tenant_id: str, key: str, *, embedding: bool = False) -> str:
    return f"{'eh' if embedding else 'h'}.{kv.safe_key(tenant_id)}.{key}"


class ExactStore:
    def __init__(self, bucket: KeyValue) -> None:
        self._kv = bucket
        self.fence: ErasedFence | None = None

    async def get(
        self,
        tenant_id: str,
        key: str,
        *,
        embedding: bool = False,
        now: float | None = None,
        ttl_s: float | None = None,
    ) -> CachedAnswer | None:
        """The tenant's live answer under `key`: a chat answer, or with `embedding` an embedding's; with
        `ttl_s` (the reader's TTL), only one kept less than that long ago."""
        try:  # a revision the server stored on a client's behalf is a miss, never served (kv_guard)
            value, _ = await kv_guard.read(self._kv, answer_key(tenant_id, key, embedding=embedding))
        except kv_guard.ForgedEntry:
            return None
        if value is None:
            return None
        try:
            answer = CachedAnswer.model_validate_json(value)
        except ValidationError:
            return None
        if answer.tenant_id != tenant_id or answer.key != key or (answer.embedding is not None) != embedding:
            return None
        now = time.time() if now is None else now
        if answer.expires_at <= now or (ttl_s is not None and answer.created_at + ttl_s <= now):
            return None
        return answer

    async def put(self, answer: CachedAnswer) -> bool:
        """Keeps the answer; False when its organisation was erased meanwhile: purged (access/fence.py)."""
        where = answer_key(answer.tenant_id, answer.key, embedding=answer.embedding is not None)
        await self._kv.put(where, answer.model_dump_json(exclude_none=True).encode())
        if self.fence is not None and await self.fence.undone(answer.tenant_id, "a cached answer"):
            await kv.purge_matching(self._kv, where)
            return False
        return True

    async def count_hit(self, tenant_id: str, key: str, *, embedding: bool = False) -> int:
        def add(current: bytes | None) -> tuple[bytes, int]:
            n = int(current or b"0") + 1
            return str(n).encode(), n

        where = hits_key(tenant_id, key, embedding=embedding)
        hits = await kv.update(self._kv, where, add)
        if self.fence is not None and await self.fence.undone(tenant_id, "a cache hit count"):
            await kv.purge_matching(self._kv, where)
        return hits

    async def hits(self, tenant_id: str, key: str, *, embedding: bool = False) -> int:
        value, _ = await kv.read(self._kv, hits_key(tenant_id, key, embedding=embedding))
        return int(value or b"0")

    async def forget_tenant(self, tenant_id: str) -> int:
        """Purges every answer and hit count of the tenant (an erasure); how many keys that removed. One
        token after the tenant's (`*`, a hash holds no dot), so a tenant whose id starts with this one's
        and a dot is never matched."""
        tenant = kv.safe_key(tenant_id)
        kinds = ("a", "h", "e", "eh")
        return sum([await kv.purge_matching(self._kv, f"{kind}.{tenant}.*") for kind in kinds])
