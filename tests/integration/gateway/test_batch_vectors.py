"""An embedding batch line's large vectors outlive the embeddings store's short TTL (real nats-server): the
executor puts a batch line's straight into the batch's store, so they are there however long no gateway
runs the batch; those that went to the embeddings store the runner copies into the batch's store and
deletes the original; the output is rendered from the batch's store (checked against the result's
digest), whose objects are deleted once the output file holds them."""

from __future__ import annotations

import asyncio
import io
import json
import time
from contextlib import ExitStack
from pathlib import Path

import nats
import numpy as np
import openai
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import objects, subjects, vectors
from switchyard.common.events import EmbeddingRequest
from switchyard.gateway.batches.vectors import open_bucket
from tests.integration.gateway.harness import Answerer, fake_vectors, gateways, make_org

pytestmark = pytest.mark.integration
EMBEDDER = "local/all-minilm-l6-v2"
VECTORS_TTL_S = 1.0  # the embeddings store's TTL here (10 minutes in production)


async def test_kept_vectors_are_copied_read_back_and_forgotten(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await vectors.open_store(js, ttl_s=600, max_bytes=64 * 1024 * 1024, replicas=1)
        kept = await open_bucket(js, max_bytes=64 * 1024 * 1024, replicas=1)
        rows = np.arange(200 * 384, dtype="<f4").reshape(200, 384)
        stored = await vectors.keep(js, rows.tobytes(), count=200, dimensions=384, name="acme.task-1")
        assert stored.object == "acme.task-1"  # 300 KiB: over the inline limit

        await kept.keep(stored, tenant_id="acme")
        with pytest.raises(objects.ObjectGone):  # the original is deleted once copied
            await objects.describe(js, subjects.OBJ_EMBEDDINGS, "acme.task-1")
        await kept.keep(stored, tenant_id="acme")  # again (a runner that took over): nothing to do
        inline = await kept.inline(stored)
        assert inline.object is None and inline.sha256 == stored.sha256
        assert vectors.unpack(inline) == rows.tobytes()

        await kept.forget(["acme.task-1"])
        assert await kept.inline(stored) == stored  # not kept any more: read where the executor put it
        with pytest.raises(vectors.VectorsGone):  # ... which is gone too
            await vectors.fetch(js, stored)
        small = await vectors.keep(js, rows[:2].tobytes(), count=2, dimensions=384, name="acme.task-2")
        await kept.keep(small, tenant_id="acme")  # inline in its result event: nothing to keep
        assert await kept.inline(small) == small
    finally:
        await nc.close()


async def test_a_lines_vectors_outlive_an_outage_longer_than_the_embeddings_stores_ttl(
    tmp_path: Path,
) -> None:
    """The line's task completes while no gateway runs (the only replica was killed), and stays unread
    longer than the embeddings store keeps anything: the replica started after finishes the batch with the
    line's vectors, every number, read from the batch's store."""
    server = NatsServer(tmp_path / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'switchyard.db'}"
    env = {
        "SWITCHYARD_BATCH_LEASE_S": "2",
        "SWITCHYARD_BATCH_SCAN_S": "0.3",
        "SWITCHYARD_BATCH_POLL_S": "0.1",
    }
    stack = ExitStack()
    for replica in ("a", "b"):
        (tmp_path / replica).mkdir()
    pipeline = await Answerer.start(server.url, hold=True, vectors_ttl_s=VECTORS_TTL_S)
    nc = await nats.connect(server.url)
    try:
        first = await asyncio.to_thread(
            stack.enter_context, gateways(server, db_url, tmp_path / "a", env=env)
        )
        acme = await make_org(db_url, "acme")
        texts = [f"text {i}" for i in range(200)]  # 300 KiB of vectors: not in the result event
        line = {
            "custom_id": "big",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": EMBEDDER, "input": texts},
        }
        client = openai.AsyncOpenAI(base_url=f"{first[0]}/v1", api_key=acme.keys["admin"], max_retries=0)
        upload = ("in.jsonl", io.BytesIO(json.dumps(line).encode() + b"\n"))
        file = await client.files.create(file=upload, purpose="batch")
        batch = await client.batches.create(
            input_file_id=file.id, endpoint="/v1/embeddings", completion_window="24h"
        )
        deadline = time.monotonic() + 20
        while not pipeline.held:
            assert time.monotonic() < deadline, "the line was never submitted"
            await asyncio.sleep(0.05)
        assert pipeline.held[0].batch  # the task says it is a batch line
        first.procs[0].kill()  # no runner any more
        first.procs[0].wait(5)

        await pipeline.release()  # the line's task completes while no gateway runs
        canary = await vectors.keep(
            nc.jetstream(), b"\0" * 300_000, count=1, dimensions=75_000, name="canary"
        )
        deadline = time.monotonic() + 20
        while True:  # until the embeddings store has expired what it held then
            try:
                await vectors.fetch(nc.jetstream(), canary, timeout_s=0.5)
            except vectors.VectorsGone:
                break
            assert time.monotonic() < deadline, "the embeddings store kept its objects"
            await asyncio.sleep(0.2)

        second = await asyncio.to_thread(
            stack.enter_context, gateways(server, db_url, tmp_path / "b", env=env)
        )
        client = openai.AsyncOpenAI(base_url=f"{second[0]}/v1", api_key=acme.keys["admin"], max_retries=0)
        deadline = time.monotonic() + 30
        while (done := await client.batches.retrieve(batch.id)).status != "completed":
            assert done.status in ("validating", "in_progress", "finalizing"), done
            assert time.monotonic() < deadline, f"batch still {done.status}"
            await asyncio.sleep(0.2)
        assert (done.request_counts.completed, done.request_counts.failed) == (1, 0)
        [output] = [
            json.loads(row) for row in (await client.files.content(done.output_file_id)).text.splitlines()
        ]
        assert output["response"]["status_code"] == 200
        got = np.asarray([one["embedding"] for one in output["response"]["body"]["data"]], dtype="<f4")
        assert np.array_equal(got, fake_vectors(EmbeddingRequest(model=EMBEDDER, input=texts)))
        name = vectors.object_name(acme.id, pipeline.seen[0].task_id)
        with pytest.raises(objects.ObjectGone):  # deleted once the output file held them
            await objects.describe(nc.jetstream(), subjects.OBJ_BATCH_VECTORS, name)
    finally:
        await nc.close()
        await pipeline.close()
        await asyncio.to_thread(stack.close)
        server.stop()
