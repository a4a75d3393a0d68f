"""An embedding batch line's large vectors outlive the embeddings store's short TTL (real nats-server): the
runner copies them into the batch's store and deletes the original; the output is rendered from the copy
(checked against the result's digest); the copy is deleted once the output file holds it."""

from __future__ import annotations

import nats
import numpy as np
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import objects, subjects, vectors
from switchyard.gateway.batches.vectors import open_bucket

pytestmark = pytest.mark.integration


async def test_kept_vectors_are_copied_read_back_and_forgotten(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await vectors.open_store(js, ttl_s=600, max_bytes=64 * 1024 * 1024, replicas=1)
        kept = await open_bucket(js, max_bytes=64 * 1024 * 1024, replicas=1)
        rows = np.arange(200 * 384, dtype="<f4").reshape(200, 384)
        stored = await vectors.keep(js, rows.tobytes(), count=200, dimensions=384, name="acme.task-1")
        assert stored.object == "acme.task-1"  # 300 KiB: over the inline limit

        await kept.keep(stored)
        with pytest.raises(objects.ObjectGone):  # the original is deleted once copied
            await objects.describe(js, subjects.OBJ_EMBEDDINGS, "acme.task-1")
        await kept.keep(stored)  # again (a runner that took over): nothing to do, nothing lost
        inline = await kept.inline(stored)
        assert inline.object is None and inline.sha256 == stored.sha256
        assert vectors.unpack(inline) == rows.tobytes()

        await kept.forget(["acme.task-1"])
        assert await kept.inline(stored) == stored  # not kept any more: read where the executor put it
        with pytest.raises(vectors.VectorsGone):  # ... which is gone too
            await vectors.fetch(js, stored)
        small = await vectors.keep(js, rows[:2].tobytes(), count=2, dimensions=384, name="acme.task-2")
        await kept.keep(small)  # inline in its result event: nothing to keep
        assert await kept.inline(small) == small
    finally:
        await nc.close()
