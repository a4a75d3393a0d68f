"""objects.py on a real nats-server: a meta or chunk the server stored on a client's behalf (a direct get
answered to the object store's subject) is refused and counted, an object whose chunks a writer replaced is
corrupt (the digest, which the read did not check before), a put over a forged meta purges no other
object's chunks, and an erasure of a tenant's vectors ends and deletes its objects when the newest meta is
an API answer (nats-py's `list` never ends then)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from prometheus_client import REGISTRY

from switchyard.cli.processes import NatsServer
from switchyard.common import objects, vectors

pytestmark = pytest.mark.integration

BUCKET = vectors.BUCKET
STREAM = f"OBJ_{BUCKET}"


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    await vectors.open_store(client.jetstream(), ttl_s=600, max_bytes=64 * 1024 * 1024, replicas=1)
    yield client
    await client.close()


async def answered_to(nc: Client, bait: str, subject: str) -> None:
    """The server stores the last message on `bait` on `subject` (a direct get answered there)."""
    await nc.publish(f"$JS.API.DIRECT.GET.{STREAM}.{bait}", reply=subject)
    await nc.flush()
    await asyncio.sleep(0.2)


def refused(reason: str) -> float:
    labels = {"subscription": f"$O.{BUCKET}", "reason": reason}
    return REGISTRY.get_sample_value("switchyard_bus_refused_messages_total", labels) or 0.0


async def test_a_forged_meta_is_refused_and_counted(nc: Client) -> None:
    js = nc.jetstream()
    raw = os.urandom(300_000)
    await objects.put(js, BUCKET, "acme.real", raw)
    await objects.put(js, BUCKET, "mallory.bait", b"not acme's")
    before = refused(objects.META_REASON)
    await answered_to(
        nc, objects.meta_subject(BUCKET, "mallory.bait"), objects.meta_subject(BUCKET, "acme.real")
    )
    with pytest.raises(objects.ObjectForged):
        await objects.read(js, BUCKET, "acme.real")
    assert refused(objects.META_REASON) == before + 1
    assert [info.name for info in await objects.listed(js, BUCKET)] == ["mallory.bait"]
    await objects.put(js, BUCKET, "acme.real", raw)  # its writer writes it again
    assert await objects.read(js, BUCKET, "acme.real") == raw
    assert await objects.read(js, BUCKET, "mallory.bait") == b"not acme's"  # its chunks were not purged


async def test_a_chunk_a_writer_replaced_is_corrupt(nc: Client) -> None:
    """No mark of the server, so only the digest tells: `objects.read` checks it now."""
    js = nc.jetstream()
    info = await objects.put(js, BUCKET, "acme.real", b"a" * 1000)
    await js.publish(
        objects.chunk_subject(BUCKET, info.nuid or ""), b"b" * 1000, headers={api.Header.ROLLUP: "sub"}
    )
    with pytest.raises(objects.ObjectCorrupt):
        await objects.read(js, BUCKET, "acme.real")


async def test_an_erasure_ends_when_the_newest_meta_is_an_api_answer(nc: Client) -> None:
    js = nc.jetstream()
    for name in ("acme.t1", "acme.t2", "globex.t1"):
        await objects.put(js, BUCKET, name, b"x" * 100)
    forged = api.ObjectInfo(name="bait", bucket=BUCKET, nuid="whatever", size=1, chunks=1)
    await js.publish(objects.meta_subject(BUCKET, "bait"), json.dumps(forged.as_dict()).encode())
    await answered_to(nc, objects.meta_subject(BUCKET, "bait"), objects.meta_subject(BUCKET, "acme.t3"))
    await nc.publish(f"$JS.API.STREAM.INFO.{STREAM}", reply=objects.meta_subject(BUCKET, "acme.t4"))
    await nc.flush()
    await asyncio.sleep(0.2)
    async with asyncio.timeout(10):
        assert await vectors.forget_tenant(js, "acme") == 4  # its two objects and the two forged metas
    assert sorted(info.name for info in await objects.listed(js, BUCKET)) == ["bait", "globex.t1"]


async def test_reads_of_a_forged_result_are_vectors_corrupt(nc: Client) -> None:
    js: JetStreamContext = nc.jetstream()
    raw = os.urandom(400_000)
    result = await vectors.keep(js, raw, count=100_000, dimensions=1, name="acme.t1")
    await objects.put(js, BUCKET, "bait", raw[:1000])
    await answered_to(nc, objects.meta_subject(BUCKET, "bait"), objects.meta_subject(BUCKET, "acme.t1"))
    with pytest.raises(vectors.VectorsCorrupt):
        await vectors.fetch(js, result)
