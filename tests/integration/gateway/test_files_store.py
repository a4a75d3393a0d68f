"""The file store on a real nats-server: an expired file is gone for readers at once, and its bytes leave
the object store when it is next listed or when a sweep runs; a sweep spans every organisation, and deletes
objects left without a description and puts cut before their end once old enough, never an upload still
in progress; it keeps a file past its expiry while an unfinished batch reads it, and a file two replicas
sweep at once is removed (and counted) once."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from typing import Any

import nats
import pytest
from nats.js.object_store import ObjectStore
from prometheus_client import REGISTRY

from switchyard.cli.processes import NatsServer
from switchyard.common import objects, subjects
from switchyard.gateway.batches.models import Batch, BatchRecord
from switchyard.gateway.batches.service import Batches
from switchyard.gateway.batches.store import BatchStore, batches_bucket, new_batch_id
from switchyard.gateway.errors import NotFound
from switchyard.gateway.files.share import Share
from switchyard.gateway.files.store import BUCKET, STREAM, files_bucket, new_file_id, tenant_part
from switchyard.gateway.taskapi.idempotency import BodyKey

pytestmark = pytest.mark.integration


async def test_expired_files_are_unseen_then_deleted_by_a_list_or_a_sweep(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        files = await files_bucket(js, max_bytes=8 * 1024 * 1024)
        past = int(time.time()) - 1
        kept = await files.put(tenant_id="a", purpose="batch", filename="k.jsonl", data=b"{}\n")
        listed = await files.put(
            tenant_id="a", purpose="batch_output", filename="o.jsonl", data=b"x" * 1000, expires_at=past
        )
        swept = [
            await files.put(
                tenant_id=t, purpose="batch_output", filename="o.jsonl", data=b"y" * 1000, expires_at=past
            )
            for t in ("b", "c")
        ]
        with pytest.raises(NotFound):
            await files.get(tenant_id="a", file_id=listed.id)
        page, _ = await files.list(tenant_id="a", purpose=None, limit=10, after=None, order="desc")
        assert [f.id for f in page] == [kept.id]
        assert await files.sweep() == 2  # b's and c's; a's went with its list
        for tenant, file in zip(("b", "c"), swept, strict=True):
            with pytest.raises(NotFound):
                await files.content(tenant_id=tenant, file_id=file.id)
        assert await files.sweep() == 0
        assert (await files.content(tenant_id="a", file_id=kept.id)) == b"{}\n"
        state = (await js.stream_info(STREAM)).state
        assert (
            state.bytes < 3000
        )  # the three expired files' chunks are gone (their metas stay, marked deleted)
    finally:
        await nc.close()


class HeldUpload(io.BytesIO):
    """A file whose first chunk reads at once and the rest only once `release` is set: an upload in
    progress (nats-py reads it on a thread)."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self._parts = [b"h" * 128 * 1024, b"i" * 100]
        self._release = release

    def readinto(self, buffer: Any) -> int:
        if not self._parts:
            return 0
        if len(self._parts) == 1 and not self._release.wait(timeout=30):
            raise TimeoutError("never released")
        part = self._parts.pop(0)
        buffer[: len(part)] = part
        return len(part)


async def test_what_a_crash_left_unseen_is_deleted_once_old_but_never_an_upload_in_progress(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    release = threading.Event()
    try:
        js = nc.jetstream()
        files = await files_bucket(js, max_bytes=8 * 1024 * 1024)
        store = ObjectStore(name=BUCKET, stream=STREAM, js=js)
        kept = await files.put(tenant_id="a", purpose="batch", filename="k.jsonl", data=b"{}\n")
        # a crash between a put's bytes and its description
        unnamed = f"{tenant_part('a')}.{new_file_id()}"
        await store.put(unnamed, b"z" * 1000)
        # a crash between a delete's description and its bytes
        deleted = await files.put(tenant_id="b", purpose="batch", filename="d.jsonl", data=b"d" * 1000)
        await (await js.key_value(subjects.KV_FILES)).delete(f"{tenant_part('b')}.{deleted.id}")
        await store.put("not-a-file", b"n")  # not named as a file: left alone whatever its age
        cut = f"$O.{BUCKET}.C.cutbeforeitsend"  # a put cut by a crash: chunks, and no meta names them
        for _ in range(2):
            await js.publish(cut, b"c" * 1000)

        assert await files.sweep_orphans() == 0  # younger than an hour
        await asyncio.sleep(1.1)
        before = (await js.stream_info(STREAM)).state.messages
        upload = asyncio.create_task(
            files.put(tenant_id="c", purpose="batch", filename="u.jsonl", data=HeldUpload(release))
        )
        while (await js.stream_info(STREAM)).state.messages == before:  # its first chunk is stored
            await asyncio.sleep(0.05)
        # the two objects left without a description and the cut put; the upload in progress is younger
        assert await files.sweep_orphans(older_than_s=1.0) == 3
        for name in (unnamed, f"{tenant_part('b')}.{deleted.id}"):
            with pytest.raises(objects.ObjectGone):
                await objects.describe(js, BUCKET, name)
        assert not (await js.stream_info(STREAM, subjects_filter=cut)).state.subjects
        await objects.describe(js, BUCKET, "not-a-file")

        release.set()
        uploaded = await upload  # its chunks were not touched while it was in progress
        assert await files.content(tenant_id="c", file_id=uploaded.id) == b"h" * 128 * 1024 + b"i" * 100
        assert await files.content(tenant_id="a", file_id=kept.id) == b"{}\n"
        assert await files.sweep_orphans(older_than_s=0) == 0  # every file's object is described
    finally:
        release.set()
        await nc.close()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_sweep_keeps_what_unfinished_batches_read_and_removes_each_expired_file_once(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        files, replica = [await files_bucket(js, max_bytes=8 * 1024 * 1024) for _ in range(2)]
        store = BatchStore(await batches_bucket(js))
        batches = Batches(
            store,
            files,
            None,  # type: ignore[arg-type]
            share=Share(files=10, bytes=1024**2),
            body_key=BodyKey(b"k" * 32),
        )
        files.in_use = replica.in_use = batches.inputs_in_use
        past = int(time.time()) - 1
        read = await files.put(
            tenant_id="a", purpose="batch", filename="i.jsonl", data=b"{}\n", expires_at=past
        )
        for tenant in ("a", "b"):
            await files.put(
                tenant_id=tenant, purpose="batch", filename="o.jsonl", data=b"x" * 100, expires_at=past
            )
        await files.put(tenant_id="b", purpose="batch_output", filename="o.jsonl", data=b"y" * 10)
        now = int(time.time())
        batch = Batch(
            id=new_batch_id(),
            endpoint="/v1/chat/completions",
            input_file_id=read.id,
            status="in_progress",
            created_at=now,
            expires_at=now + 86400,
        )
        await store.create(BatchRecord(batch=batch, tenant_id="a", user_id=None, api_key_id="key_1"))
        removed = ("switchyard_gateway_files_removed_total", "switchyard_gateway_files_removed_bytes_total")
        before = [_sample(name, reason="expired") for name in removed]

        assert sum(await asyncio.gather(files.sweep(), replica.sweep())) == 2  # the two, once each
        grew = [_sample(name, reason="expired") - was for name, was in zip(removed, before, strict=True)]
        assert grew == [2, 200]
        assert await files.get(tenant_id="a", file_id=read.id, held=True) == read  # its batch still reads it
        with pytest.raises(NotFound):  # for anyone else it is gone
            await files.get(tenant_id="a", file_id=read.id)
        assert await files.usage(tenant_id="a") == (1, 3)
        assert _sample("switchyard_gateway_files_stored", purpose="batch") == 1
        assert _sample("switchyard_gateway_files_stored_bytes", purpose="batch_output") == 10

        await store.finished(batch.id, tenant_id="a")
        assert await files.sweep() == 1
        with pytest.raises(NotFound):
            await files.get(tenant_id="a", file_id=read.id, held=True)
    finally:
        await nc.close()
