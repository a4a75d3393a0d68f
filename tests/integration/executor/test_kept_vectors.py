"""Stored vectors of an abandoned task, on a real nats-server: the replica that put them deletes them when
it hears the task's cancellation or timeout, before or after the put; vectors nobody abandoned stay for
their reader, and a cancellation heard by any other replica, or of another task, deletes nothing. A batch
line's vectors go to the batches' store (the embeddings store when that one cannot take them), and are
deleted where they went."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import numpy as np
import pytest
from nats.js import JetStreamContext

from switchyard.cli.processes import NatsServer
from switchyard.common import objects, vectors
from switchyard.executor.cancellations import Cancellations
from switchyard.executor.kept_vectors import KeptVectors

pytestmark = pytest.mark.integration
RAW = np.arange(4 * 64, dtype="<f4").tobytes()  # 1 KiB: over the inline limit below


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await vectors.open_store(js, ttl_s=600, max_bytes=16 * 1024 * 1024, replicas=1)
    yield js
    await nc.close()


async def _there(js: JetStreamContext, tenant: str, task: str, bucket: str = vectors.BUCKET) -> bool:
    try:
        await (await js.object_store(bucket)).get_info(vectors.object_name(tenant, task))
    except nats.js.errors.NotFoundError:
        return False
    return True


async def _put(kept: KeptVectors, tenant: str, task: str) -> None:
    result = await kept.keep(RAW, count=4, dimensions=64, name=vectors.object_name(tenant, task))
    assert result.object is not None


async def test_an_abandoned_tasks_stored_vectors_are_deleted_by_the_replica_that_put_them(
    js: JetStreamContext,
) -> None:
    kept = KeptVectors(lambda: js, inline_bytes=256)
    heard = Cancellations(on_cancel=kept.abandon)  # as the executor wires them
    other = KeptVectors(lambda: js, inline_bytes=256)  # another replica: it put nothing

    await _put(kept, "acme", "t-read")  # nobody gives up on it: it stays for its reader
    await _put(kept, "acme", "t-left")
    other.abandon("acme", "t-left")
    heard.cancel("globex", "t-left")  # another tenant's task of that id
    await other.drain()
    await kept.drain()
    assert await _there(js, "acme", "t-left")

    heard.cancel("acme", "t-left")  # the client left after the vectors were put
    await kept.drain()
    assert not await _there(js, "acme", "t-left") and await _there(js, "acme", "t-read")

    heard.cancel("acme", "t-late", age_s=1.0)  # the gateway gave up before the run ended and put them
    await _put(kept, "acme", "t-late")
    await kept.drain()
    assert not await _there(js, "acme", "t-late")

    inline = await kept.keep(RAW[:128], count=2, dimensions=16, name=vectors.object_name("acme", "t-small"))
    heard.cancel("acme", "t-small")
    await kept.drain()
    assert inline.data is not None  # inline vectors have nothing to delete


async def test_a_batch_lines_vectors_go_to_the_batches_store_and_are_deleted_there(
    js: JetStreamContext,
) -> None:
    kept = KeptVectors(lambda: js, inline_bytes=256)
    name = vectors.object_name("acme", "t-line")
    early = await kept.keep(RAW, count=4, dimensions=64, name=name, batch=True)  # no batches' store yet
    assert (early.object, early.bucket) == (name, None) and await _there(js, "acme", "t-line")
    await vectors.delete(js, name)

    await objects.open_bucket(
        js, vectors.BATCH_BUCKET, description="t", max_bytes=4 * 1024 * 1024, replicas=1, setting="T"
    )
    line = await kept.keep(RAW, count=4, dimensions=64, name=name, batch=True)
    assert line.bucket == vectors.BATCH_BUCKET and not await _there(js, "acme", "t-line")
    assert await vectors.fetch(js, line) == RAW
    await _put(kept, "acme", "t-other")  # not a batch line: the embeddings store, as before
    assert await _there(js, "acme", "t-other") and not await _there(
        js, "acme", "t-other", vectors.BATCH_BUCKET
    )

    kept.abandon("acme", "t-line")  # the batch was cancelled while the line ran
    await kept.drain()
    assert not await _there(js, "acme", "t-line", vectors.BATCH_BUCKET)
