"""An embedding line's vectors, kept until the batch's output file holds them.

Small vectors travel in the task's result event, which the events stream keeps for days: the output file
is rendered from it. Larger ones the executor puts straight into the batches' own object store
`switchyard-batch-vectors` (the task says it is a batch line, `TaskSubmitted.batch`; the result's `bucket`
names the store), so they are there however long no runner runs the batch. When that store was full (or
the task came from a gateway that did not say so) they are in `switchyard-embeddings`, whose objects
expire minutes after the executor put them (`SWITCHYARD_EMBEDDING_STORE_TTL_S`), long before a batch of
hours is finalized: when such a line's task completes, its runner copies the vectors here under the same
name (and deletes the original, as the gateway deletes the vectors it has read). The output file is
rendered from what is here, and these objects are deleted once it is stored. Whatever a failed delete
leaves expires with the bucket's TTL (KEEP_S)."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import nats.errors
from nats.js import JetStreamContext

from switchyard.common import objects, subjects, vectors
from switchyard.common.events import EmbeddingResult

if TYPE_CHECKING:
    from switchyard.gateway.access.fence import ErasedFence

log = logging.getLogger(__name__)
BUCKET = subjects.OBJ_BATCH_VECTORS
DESCRIPTION = "Switchyard: embedding batch lines' vectors, until the batch's output file holds them"
KEEP_S = 3 * 24 * 3600.0  # a batch's completion window (24 h) and its finishing, with room to spare


class KeptVectors:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self.fence: ErasedFence | None = None

    async def keep(self, result: EmbeddingResult, *, tenant_id: str) -> None:
        """Copies a stored result's vectors here and deletes the original (nothing for an inline result, or
        one put or kept here already). VectorsUnreadable when the original cannot be read (expired). The
        copy is deleted again when the organisation was erased meanwhile (access/fence.py)."""
        name = result.object
        if name is None or result.bucket == BUCKET:
            return
        with contextlib.suppress(objects.ObjectGone, objects.ObjectUnreadable):  # forged: written over
            await objects.describe(self._js, BUCKET, name)
            return
        raw = await vectors.fetch(self._js, result)
        await objects.put(self._js, BUCKET, name, raw)
        await vectors.discard(self._js, result)
        if self.fence is not None and await self.fence.undone(tenant_id, f"the vectors {name}"):
            await objects.delete(self._js, BUCKET, name)

    async def inline(self, result: EmbeddingResult) -> EmbeddingResult:
        """The result with its vectors inline when they are kept here (checked against its digest); else
        as it is (inline already, or read where the executor put it, if it is still there)."""
        if result.object is None:
            return result
        try:
            raw = await objects.read(self._js, BUCKET, result.object)
        except objects.ObjectGone:
            return result
        except objects.ObjectUnreadable as exc:  # forged (refused, counted) or corrupt
            raise vectors.VectorsCorrupt(f"the kept vectors {result.object} cannot be read: {exc}") from None
        packed = vectors.pack(raw, count=result.count, dimensions=result.dimensions)
        if packed.sha256 != result.sha256:
            raise vectors.VectorsCorrupt(f"the kept vectors {result.object} do not match their digest")
        return packed

    async def forget(self, names: list[str]) -> None:
        """Deletes the kept vectors of `names` (the output file holds them now), and any original left."""
        for name in names:
            for bucket in (BUCKET, vectors.BUCKET):
                try:
                    await objects.delete(self._js, bucket, name)
                except (nats.errors.Error, TimeoutError) as exc:
                    log.warning("kept vectors %s not deleted (they expire): %r", name, exc)


async def open_bucket(js: JetStreamContext, *, max_bytes: int, replicas: int) -> KeptVectors:
    await objects.open_bucket(
        js,
        BUCKET,
        description=DESCRIPTION,
        max_bytes=max_bytes,
        replicas=replicas,
        setting="SWITCHYARD_BATCH_VECTORS_BYTES",
        ttl_s=KEEP_S,
    )
    return KeptVectors(js)
