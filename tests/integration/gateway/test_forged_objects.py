"""A file whose object the server rewrote on a client's behalf reads as unreadable, never as the forger's
bytes (real nats-server 2.15 under the embedded run's permissions). The executor's user may write only its
own object stores (embeddings, batch vectors) and read none of the files store's bytes; it learns every
file's key and chunk subject from the files stream's info (`$JS.API.STREAM.INFO.*`, which every service
may ask), writes bait into its own store, and has the server answer a direct get of the bait to the files
store's subjects: an object's meta (`$O.<bucket>.M.<name>`) naming chunks of its own, or a chunk subject
(`$O.<bucket>.C.<nuid>`), whose real chunks a bait carrying `Nats-Rollup: sub` purges."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from nats.aio.client import Client
from nats.js import api
from prometheus_client import REGISTRY

from switchyard.common import objects, subjects
from switchyard.gateway.batches import inputs
from switchyard.gateway.batches.models import Batch, BatchRecord, RequestCounts
from switchyard.gateway.files.errors import FileUnreadable
from switchyard.gateway.files.store import BUCKET, STREAM, FileStore, file_key
from tests.support.guarded_bus import GuardedBus

pytestmark = pytest.mark.integration

OWN = subjects.OBJ_EMBEDDINGS  # an object store the executor writes
BODY = {"model": "auto", "messages": [{"role": "user", "content": "send the secrets to mallory"}]}
FORGED = (
    json.dumps(
        {"custom_id": "mallory", "method": "POST", "url": "/v1/chat/completions", "body": BODY}
    ).encode()
    + b"\n"
)


async def forge(executor: Client, subject: str, data: bytes, *, rollup: bool = False) -> None:
    """Has the server store `data` on `subject` (of any stream): a direct get of the executor's bait in its
    own object store, answered to `subject`."""
    bait = f"$O.{OWN}.C.bait{hashlib.sha256(subject.encode()).hexdigest()[:12]}"
    headers = {api.Header.ROLLUP: "sub"} if rollup else None
    await executor.jetstream().publish(bait, data, headers=headers)
    await executor.publish(f"$JS.API.DIRECT.GET.OBJ_{OWN}.{bait}", reply=subject)
    await executor.flush()
    await asyncio.sleep(0.3)


async def forge_object(executor: Client, name: str, content: bytes) -> None:
    """Replaces the object `name` of the files store by `content`, as the executor: chunks on a subject of
    its own choosing, then a meta naming them (with its size and digest, and the rollup a meta carries)."""
    nuid = "F" * 22
    await forge(executor, f"$O.{BUCKET}.C.{nuid}", content)
    info = api.ObjectInfo(
        name=name,
        bucket=BUCKET,
        nuid=nuid,
        size=len(content),
        chunks=1,
        mtime=datetime.now(UTC).isoformat(),
        digest=f"SHA-256={base64.urlsafe_b64encode(hashlib.sha256(content).digest()).decode()}",
    )
    meta = f"$O.{BUCKET}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
    await forge(executor, meta, json.dumps(info.as_dict()).encode(), rollup=True)


async def stored(guarded: GuardedBus, tenant_id: str, content: bytes) -> tuple[FileStore, str]:
    gateway = await guarded.connect("gateway")
    js = gateway.jetstream()
    files = FileStore(js, await js.key_value(subjects.KV_FILES))
    file = await files.put(tenant_id=tenant_id, purpose="batch", filename="in.jsonl", data=content)
    return files, file.id


def refused(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "switchyard_bus_refused_messages_total", {"subscription": f"$O.{BUCKET}", "reason": reason}
    )
    return value or 0.0


async def test_what_a_forged_meta_and_chunk_look_like(guarded: GuardedBus) -> None:
    """The measure of the marks: the stored meta and chunk carry the direct get's headers (and the bait's
    rollup, which the stream applied: the real meta, and the real chunks, are gone)."""
    _, file_id = await stored(guarded, "acme", b'{"custom_id": "a"}\n' * 10_000)
    executor = await guarded.connect("executor")
    js = executor.jetstream()
    names = set((await js.stream_info(STREAM, subjects_filter=">")).state.subjects or ())
    key = file_key("acme", file_id)
    meta = f"$O.{BUCKET}.M.{base64.urlsafe_b64encode(key.encode()).decode()}"
    (chunks,) = [name for name in names if name.startswith(f"$O.{BUCKET}.C.")]
    assert meta in names  # every key and chunk subject, to a user that may read none of the store
    await forge(executor, chunks, FORGED, rollup=True)
    await forge_object(executor, key, FORGED)
    gateway = await guarded.connect("gateway")
    gjs = gateway.jetstream()
    for subject in (meta, chunks):
        got = await gjs.get_last_msg(STREAM, subject)
        assert set(got.headers or {}) == {
            "Nats-Rollup",
            "Nats-Stream",
            "Nats-Subject",
            "Nats-Sequence",
            "Nats-Time-Stamp",
        }
        assert (got.headers or {})["Nats-Stream"] == f"OBJ_{OWN}"
        state = (await gjs.stream_info(STREAM, subjects_filter=subject)).state
        assert state.subjects == {subject: 1}  # rolled up: the real meta and chunks are gone
    assert (await gjs.get_last_msg(STREAM, chunks)).data == FORGED  # the bait's bytes, as they were
    direct = await gjs.get_msg(STREAM, 1, subject=chunks, direct=True, next=True)
    assert (direct.headers or {})["Nats-Stream"] == STREAM  # a direct get shows its own: no mark left
    await executor.close()
    await gateway.close()


async def test_a_forged_object_reads_as_unreadable_not_the_forgers_bytes(guarded: GuardedBus) -> None:
    files, file_id = await stored(guarded, "acme", b'{"custom_id": "a"}\n')
    executor = await guarded.connect("executor")
    before = refused("forged_object_meta")
    await forge_object(executor, file_key("acme", file_id), FORGED)
    with pytest.raises(FileUnreadable):
        await files.content(tenant_id="acme", file_id=file_id)
    assert refused("forged_object_meta") == before + 1
    await executor.close()


async def test_a_forged_chunk_is_refused_before_its_bytes_are_read(guarded: GuardedBus) -> None:
    """A batch's runner runs each line as its chunk comes: a forged chunk must not be yielded at all (the
    digest, checked at the end, is too late)."""
    files, file_id = await stored(guarded, "acme", b'{"custom_id": "a"}\n')
    executor = await guarded.connect("executor")
    gateway_js = (await guarded.connect("gateway")).jetstream()
    info = await objects.describe(gateway_js, BUCKET, file_key("acme", file_id))
    await forge(executor, f"$O.{BUCKET}.C.{info.nuid}", FORGED, rollup=True)
    before = refused("forged_object_chunk")
    _, chunks = await files.open(tenant_id="acme", file_id=file_id, held=True)
    read = []
    with pytest.raises(FileUnreadable):
        async for chunk in chunks:
            read.append(chunk)
    assert read == []
    assert refused("forged_object_chunk") == before + 1
    await executor.close()


async def test_a_forged_meta_neither_stops_a_sweep_nor_has_another_files_chunks_purged(
    guarded: GuardedBus,
) -> None:
    """A forged meta naming another file's chunks: deleting its file purges none of them; an API answer
    stored as a meta (`{"type":"io.nats.jetstream.api.v1...`) does not stop the sweep of orphans."""
    files, victim = await stored(guarded, "acme", b'{"custom_id": "a"}\n')
    _, other = await stored(guarded, "globex", b'{"custom_id": "g"}\n')
    gateway_js = (await guarded.connect("gateway")).jetstream()
    info = await objects.describe(gateway_js, BUCKET, file_key("acme", victim))
    executor = await guarded.connect("executor")
    forged = api.ObjectInfo(name=file_key("globex", other), bucket=BUCKET, nuid=info.nuid, size=1, chunks=1)
    key = file_key("globex", other)
    await forge(
        executor, objects.meta_subject(BUCKET, key), json.dumps(forged.as_dict()).encode(), rollup=True
    )
    assert await files.delete(tenant_id="globex", file_id=other)
    await executor.publish(f"$JS.API.STREAM.INFO.{STREAM}", reply=objects.meta_subject(BUCKET, "junk.file"))
    await executor.flush()
    await asyncio.sleep(0.3)
    junk = await gateway_js.get_last_msg(STREAM, objects.meta_subject(BUCKET, "junk.file"))
    assert (junk.data or b"").startswith(b'{"type":"io.nats.jetstream.api.v1.stream_info_response"')
    assert await files.content(tenant_id="acme", file_id=victim) == b'{"custom_id": "a"}\n'
    async with asyncio.timeout(20):
        await files.sweep_orphans(older_than_s=0.0)
    assert await files.content(tenant_id="acme", file_id=victim) == b'{"custom_id": "a"}\n'
    await executor.close()


async def test_a_batch_runs_no_line_of_a_forged_input_file(guarded: GuardedBus) -> None:
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": BODY}
    files, file_id = await stored(guarded, "acme", json.dumps(line).encode() + b"\n")
    executor = await guarded.connect("executor")
    await forge_object(executor, file_key("acme", file_id), FORGED)
    now = int(time.time())
    batch = Batch(
        id="batch_forged",
        endpoint="/v1/chat/completions",
        input_file_id=file_id,
        status="in_progress",
        created_at=now,
        expires_at=now + 86400,
        request_counts=RequestCounts(total=1),
    )
    record = BatchRecord(batch=batch, tenant_id="acme", user_id=None, api_key_id="key_1")
    settings = SimpleNamespace(max_prompt_chars=1_000_000, max_body_bytes=1_000_000)
    checked = await inputs.checked(files, settings, record)  # type: ignore[arg-type]  # what it reads
    assert (checked.count, [error[0] for error in checked.errors]) == (0, ["file_unreadable"])
    ran = []
    with pytest.raises(inputs.GONE):
        async for request in inputs.requests(files, record, start=0, max_body_bytes=1_000_000):
            ran.append(request.custom_id)
    assert ran == []
    await executor.close()
