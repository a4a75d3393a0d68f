"""Batches in JetStream KV (bucket `switchyard-batches`), shared by every gateway replica. Every change is
a compare-and-set on the record's revision, so the API's cancel and the runner's progress never overwrite
each other, and two replicas never both hold a batch's lease."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from switchyard.common import kv, subjects
from switchyard.gateway.batches import metering
from switchyard.gateway.batches.models import Batch, BatchRecord, LineError
from switchyard.gateway.batches.vectors import KeptVectors
from switchyard.gateway.errors import Conflict, NotFound

if TYPE_CHECKING:
    from switchyard.gateway.access.fence import ErasedFence

KEEP_S = 30 * 24 * 3600.0  # a batch is listed this long after its last change
_BATCH_ID = re.compile(r"(?:msg)?batch_[0-9a-f]{1,64}")
OPENAI_PREFIX = "batch_"  # an OpenAI batch's id; a message batch's (Anthropic) is `msgbatch_...`


async def batches_bucket(js: JetStreamContext) -> KeyValue:
    bucket: KeyValue = await kv.bucket(js, subjects.KV_BATCHES, ttl_s=KEEP_S)
    return bucket


def new_batch_id(prefix: str = OPENAI_PREFIX) -> str:
    """`batch_` (or `msgbatch_`) and hex: microseconds since the epoch (so ids sort by creation, newest
    listed first), then random."""
    return f"{prefix}{time.time_ns() // 1000:014x}{secrets.token_hex(8)}"


class BatchStore:
    def __init__(self, bucket: KeyValue, vectors: KeptVectors | None = None) -> None:
        self._kv = bucket
        self.vectors = vectors  # embedding lines' large vectors, until the output file holds them
        self.fence: ErasedFence | None = None  # a batch created as its organisation is erased is purged

    @property
    def bucket(self) -> KeyValue:
        return self._kv

    async def create(self, record: BatchRecord) -> bool:
        """Stores a new batch; False when its id is taken (a retry under the same Idempotency-Key made
        it: `idempotent`). Conflict `organization_erased`, nothing kept, when its organisation was erased
        as it was created (access/fence.py)."""
        batch_id = record.batch.id
        try:
            await self._kv.create(f"b.{batch_id}", record.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            return False
        await self._kv.put(f"t.{record.tenant_id}.{batch_id}", b"")
        await self._kv.put(f"o.{record.tenant_id}.{batch_id}", b"")  # the organisation's, not finished
        await self._kv.put(f"a.{batch_id}", b"")
        if self.fence is not None and await self.fence.undone(record.tenant_id, f"the batch {batch_id}"):
            await self.erase_tenant(record.tenant_id)
            raise Conflict(
                f"the organisation {record.tenant_id} was erased: the batch is not kept",
                code="organization_erased",
                retry=False,
            )
        return True

    async def unfinished(self, *, tenant_id: str) -> int:
        """How many of the organisation's batches are not finished yet (one request: their keys)."""
        return len(await self.unfinished_ids(tenant_id=tenant_id))

    async def unfinished_ids(self, *, tenant_id: str) -> list[str]:
        prefix = f"o.{tenant_id}."
        return [key[len(prefix) :] for key in await kv.keys(self._kv, prefix)]

    async def read(self, batch_id: str) -> BatchRecord | None:
        if not _BATCH_ID.fullmatch(batch_id):
            return None
        value, _ = await kv.read(self._kv, f"b.{batch_id}")
        return None if value is None else BatchRecord.model_validate_json(value)

    async def get(self, *, tenant_id: str, batch_id: str, prefix: str = OPENAI_PREFIX) -> BatchRecord:
        """The organisation's batch of the kind its id's `prefix` names; NotFound for none, or another
        organisation's (or kind's: each API sees its own)."""
        record = await self.read(batch_id) if batch_id.startswith(prefix) else None
        if record is None or record.tenant_id != tenant_id:
            shown = batch_id if len(batch_id) <= 80 else f"{batch_id[:80]}…"
            raise NotFound(f"no batch {shown!r} in this organisation", param="batch_id")
        return record

    async def change(
        self, batch_id: str, edit: Callable[[BatchRecord], BatchRecord | None]
    ) -> BatchRecord | None:
        """`edit` applied by compare-and-set (run again on a conflict; None: no change); the record as it
        then stands, or None when there is no such batch."""

        def step(current: bytes | None) -> tuple[bytes | None, tuple[BatchRecord, BatchRecord | None] | None]:
            if current is None:
                return None, None
            record = BatchRecord.model_validate_json(current)
            edited = edit(record)
            if edited is None:
                return None, (record, None)
            return edited.model_dump_json().encode(), (record, edited)

        changed = await kv.update(self._kv, f"b.{batch_id}", step)
        if changed is None:
            return None
        before, after = changed
        if after is None:
            return before
        metering.count(before, after)  # once per change written: this replica's compare-and-set took it
        return after

    async def page(
        self,
        *,
        tenant_id: str,
        after: str | None,
        limit: int,
        before: str | None = None,
        kind: str = OPENAI_PREFIX,
    ) -> tuple[list[Batch], bool]:
        """The organisation's batches whose ids begin with `kind`, newest first, from the one after `after`
        (older than it); with `before`, the `limit` just newer than it (still newest first); and whether
        more follow that way."""
        prefix = f"t.{tenant_id}."
        ids = sorted(
            (i for k in await kv.keys(self._kv, prefix) if (i := k[len(prefix) :]).startswith(kind)),
            reverse=True,
        )
        if after is not None:
            ids = [i for i in ids if i < after]
        if before is not None:
            # read from the cursor outwards (oldest first): `more` then says whether newer ones are left
            newer = [i for i in reversed(ids) if i > before]
            page, more = await self._read_page(newer, tenant_id, limit)
            return page[::-1], more
        return await self._read_page(ids, tenant_id, limit)

    async def _read_page(self, ids: list[str], tenant_id: str, limit: int) -> tuple[list[Batch], bool]:
        page: list[Batch] = []
        for batch_id in ids:
            if len(page) > limit:
                break
            record = await self.read(batch_id)
            if record is not None and record.tenant_id == tenant_id:
                page.append(record.batch)
        return page[:limit], len(page) > limit

    async def forget(self, record: BatchRecord) -> None:
        """An ended batch removed: its record and its organisation's listing of it (its refused lines'
        errors expire with the bucket's max age); its runner's marks too, should it not have cleared them
        yet (it ended the batch a moment ago), so that it is not counted unfinished without a record."""
        batch_id = record.batch.id
        await self.finished(batch_id, tenant_id=record.tenant_id)
        await self._kv.purge(f"t.{record.tenant_id}.{batch_id}")
        await self._kv.purge(f"b.{batch_id}")
        if record.idempotency_claim is not None:
            await self._kv.purge(record.idempotency_claim)

    async def erase_tenant(self, tenant_id: str) -> tuple[int, int]:
        """Removes every batch record of the tenant (an erasure), its refused lines' errors and its marks,
        purged (no marker left); how many, and how many of them were not finished (their runner stops at
        its next change: the record is gone). Their files are the Files API's to erase."""
        prefix = f"t.{tenant_id}."
        erased, unfinished = 0, 0
        for key in await kv.keys(self._kv, prefix):
            batch_id = key[len(prefix) :]
            if not _BATCH_ID.fullmatch(batch_id):  # `t.<another tenant, with a dot>.<id>`
                continue
            record = await self.read(batch_id)
            if record is not None and record.tenant_id != tenant_id:
                continue
            if (await kv.read(self._kv, f"a.{batch_id}"))[1] is not None:  # an empty value: the revision
                unfinished += 1
            if record is not None and record.idempotency_claim is not None:
                await kv.purge_matching(self._kv, record.idempotency_claim)
            # the record first: a late line error is purged by it or by its runner (`keep_line_error`)
            for pattern in (f"b.{batch_id}", f"e.{batch_id}.*", f"a.{batch_id}", f"o.{tenant_id}.{batch_id}"):
                await kv.purge_matching(self._kv, pattern)
            await kv.purge_matching(self._kv, key)
            erased += record is not None
        return erased, unfinished

    async def active(self) -> list[str]:
        """The batches not finished yet, oldest first (a finished one's key stays listed as deleted until
        the bucket's max age removes its marker: read to tell)."""
        listed = sorted(await kv.keys(self._kv, "a."))
        return [key[2:] for key in listed if (await kv.read(self._kv, key))[1] is not None]

    async def finished(self, batch_id: str, *, tenant_id: str | None) -> None:
        await self._kv.delete(f"a.{batch_id}")  # a delete marker: no error when it is gone already
        if tenant_id is not None:  # purged, marker and all, so that its key is not counted any more
            subject = f"{self._kv._pre}o.{tenant_id}.{batch_id}"
            await self._kv._js.purge_stream(self._kv._stream, subject=subject)

    async def line_error(self, batch_id: str, index: int) -> LineError | None:
        value, _ = await kv.read(self._kv, f"e.{batch_id}.{index}")
        return None if not value else LineError.model_validate_json(value)

    async def keep_line_error(self, batch_id: str, index: int, error: LineError) -> None:
        """Kept while the batch's record is: a runner that refuses a line as its organisation is erased
        (its key revoked) purges the error again once the erasure purged the record (`erase_tenant`
        purges the record before the errors, so one of the two always does)."""
        key = f"e.{batch_id}.{index}"
        await self._kv.put(key, error.model_dump_json().encode())
        if (await kv.read(self._kv, f"b.{batch_id}"))[0] is None:
            await kv.purge_matching(self._kv, key)
