"""The erasure's fence against late writers: work of an organisation that began before its erasure (a batch
its runner finishes, an upload, a request whose answer is stored or cached) must not write its data back
after the erasure deleted it.

The erasure marks the organisation erased in the tenant registry (`switchyard-tenants`) before it deletes
anything (access/erasure.py). A writer of the organisation's data asks `erased` right AFTER its write, from
the server (never a cached answer), and removes what it wrote when the answer is yes. So either its write
came before the erasure's deletions began (the mark was not read as set, and the erasure deletes the
write), or after the mark was set (the writer reads it and removes its write): either way nothing stays.
One look-up per write (a KV get, ~0.3 ms here).
"""

from __future__ import annotations

import logging

import nats.errors
from nats.js.kv import KeyValue

from switchyard.common import kv_guard, tenants

log = logging.getLogger(__name__)


class ErasedFence:
    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket
        self._erased: set[str] = set()  # an erasure is for good: never read again

    async def erased(self, tenant_id: str) -> bool:
        """Whether the organisation is marked erased, read from the server."""
        if tenant_id in self._erased:
            return True
        value, _ = await kv_guard.read_over(self._bucket, tenants.key_of(tenant_id))
        entry = tenants.parse(value)
        if entry is None or entry.status != "erased":
            return False
        self._erased.add(tenant_id)
        return True

    async def undone(self, tenant_id: str, what: str) -> bool:
        """`erased`, logging that the writer removes what it wrote (`what`). A look-up the bus fails is
        logged and the write stands (it was answered for already): an erasure run again removes it."""
        try:
            if not await self.erased(tenant_id):
                return False
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("organisation %s: %s written, not checked against erasure (%r)", tenant_id, what, exc)
            return False
        log.info("organisation %s was erased while %s was written: removed", tenant_id, what)
        return True
