"""Stored vectors nobody will read. An embedding task's vectors above the inline limit are put in the
object store, and the gateway deletes them once it has read them; those of a task whose client left, or
whose gateway gave up on it (a cancellation or a timeout heard for the task, before the put or after it),
are deleted here at once. Otherwise they would stay until the bucket's TTL, and a client that sent large
requests and left could fill the bucket (discard-new, 1 GiB by default) and make other tenants' large
results fail as unavailable until the objects expired.

Every replica hears every cancellation; only the one that put the object knows it put it, and in which
bucket (a batch line's go to the batches' own, `vectors.keep`). A replica that restarts forgets what it
put: those objects expire with their bucket's TTL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import nats.errors
from nats.js import JetStreamContext

from switchyard.common import vectors
from switchyard.common.background import Background
from switchyard.common.events import EmbeddingResult
from switchyard.executor.recent import Recent

log = logging.getLogger(__name__)


class KeptVectors:
    def __init__(
        self,
        js: Callable[[], JetStreamContext],
        *,
        inline_bytes: int = vectors.INLINE_BYTES,
        remember_s: float = 600.0,
        most: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._js = js
        self._inline_bytes = inline_bytes
        # `remember_s`: the bucket's TTL (an object older than it is gone anyway)
        # (bucket, name) put here
        self._stored: Recent[tuple[str, str]] = Recent(keep_s=remember_s, most=most, clock=clock)
        self._abandoned: Recent[str] = Recent(keep_s=remember_s, most=most, clock=clock)  # tasks' given up
        self._deleting = Background()

    async def keep(
        self, raw: bytes, *, count: int, dimensions: int, name: str, batch: bool = False
    ) -> EmbeddingResult:
        """`vectors.keep`, remembering what was put where; deleted at once if its task was abandoned
        meanwhile."""
        result = await vectors.keep(
            self._js(),
            raw,
            count=count,
            dimensions=dimensions,
            name=name,
            inline_bytes=self._inline_bytes,
            batch=batch,
        )
        if result.object is not None:
            put = (result.bucket or vectors.BUCKET, name)
            if self._abandoned.pop(name):
                self._delete(put)
            else:
                self._stored.add(put)
        return result

    def abandon(self, tenant_id: str, task_id: str) -> None:
        """Nobody will read the task's vectors: deleted if this replica put them, else remembered, in case
        they are put later (the put of a run that ends after the cancellation was heard)."""
        name = vectors.object_name(tenant_id, task_id)
        put = [
            (bucket, name)
            for bucket in (vectors.BUCKET, vectors.BATCH_BUCKET)
            if self._stored.pop((bucket, name))
        ]
        for where in put:
            self._delete(where)
        if not put:
            self._abandoned.add(name)

    def _delete(self, put: tuple[str, str]) -> None:
        self._deleting.spawn(self._deleted(*put))

    async def _deleted(self, bucket: str, name: str) -> None:
        try:
            await vectors.delete(self._js(), name, bucket=bucket)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not delete the abandoned vectors %s (they expire): %s", name, exc)
        else:
            log.info("deleted the vectors %s: their task was abandoned", name)

    async def drain(self) -> None:
        await self._deleting.drain()
