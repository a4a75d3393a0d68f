"""Reading an object of a JetStream object store fast, chunk by chunk, and writing one as its bytes come;
refusing what the server stored there on a client's behalf.

nats-py's `ObjectStore.get` (an ordered push consumer) stalls ~250 ms per few MiB on large objects (~1 s
for 25 MiB, 38 s for 100 MiB), and holds the whole object. Here the object's meta (the last message on
`$O.<bucket>.M.<base64 name>`) says which chunks are its (`$O.<bucket>.C.<nuid>`), and `chunks` fetches
them one at a time, each when it is asked for, by a message get of the next message on that subject: 25
MiB in ~0.3 s, but only one chunk is held, and a reader may pause between chunks for as long as it likes
(a batch's runner reads its input file over hours, as slots free up; a pull consumer is deleted once
idle). The stream of bucket `b` is `OBJ_b`, as every NATS client names it.

nats-server does not check the reply subject of a JetStream API request and stores its answer wherever a
stream takes that subject (kv_guard.py): any user that may read one message can have the server write it
as an object's meta or chunk of any bucket, with headers and all (a bait carrying `Nats-Rollup: sub`
purges the subject's real messages first). Measured on nats-server 2.15
(tests/integration/gateway/test_forged_objects.py), such a meta or chunk carries the direct get's headers
(`Nats-Stream`, `Nats-Subject`, `Nats-Sequence`, `Nats-Time-Stamp`, with the bait's own), which no
publish into the store has (a writer's meta carries `Nats-Rollup` alone, a chunk nothing and never no
bytes). So the meta and chunks are read by message gets (`STREAM.MSG.GET`: the stored headers; a direct
get shows the server's own), a meta refused as a KV revision is (`kv_guard.forged`: those headers, or no
header and no value or the API's JSON envelope), a chunk when it carries those headers or no bytes (a
chunk may well begin with the API's envelope: the digest catches any other). A refusal raises
`ObjectForged` before any of the forged bytes is handed on, counted in
`switchyard_bus_refused_messages_total{subscription="$O.<bucket>", reason="forged_object_meta"}` (or
`forged_object_chunk`) and logged with the bucket and name, never the content; the chunks' size and
SHA-256 are checked against the meta at the end (`ObjectCorrupt`). `delete` and `put` never purge the
chunks a forged meta names (another object's, perhaps).

nats-py's `ObjectStore.put` takes bytes or a blocking reader; `write` takes the bytes as an async iterable
(a request's body as it arrives), and stores them as nats-py does, so every client reads the object.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from typing import IO

import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore
from nats.nuid import NUID

from switchyard.common import kv_guard, provisioning
from switchyard.common.bus_guard import REFUSED

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 5.0  # a chunk that does not come within this long: the store does not answer
CHUNK_BYTES = 128 * 1024  # an object's chunks, as nats-py writes them


class ObjectGone(LookupError):
    """The object is not in the store (expired, deleted, never put), or lost its chunks while read."""


class ObjectUnreadable(ValueError):
    """The object's description cannot be read, or its bytes are not those it describes."""


class ObjectForged(ObjectUnreadable):
    """The object's meta or one of its chunks was stored by the server on a client's behalf (counted,
    logged): not what the object's writer wrote."""


class ObjectCorrupt(ObjectUnreadable):
    """The object's bytes do not match the size and SHA-256 of its meta."""


META_REASON = "forged_object_meta"
CHUNK_REASON = "forged_object_chunk"


def meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def chunk_subject(bucket: str, nuid: str) -> str:
    return f"$O.{bucket}.C.{nuid}"


async def open_bucket(
    js: JetStreamContext,
    bucket: str,
    *,
    description: str,
    max_bytes: int,
    replicas: int,
    setting: str,
    ttl_s: float | None = None,
) -> None:
    """Creates the object store `bucket`, or brings an existing one to this configuration (safe from every
    replica on every start; they must agree on it): file storage, at most `max_bytes` in all, a put into a
    full bucket refused (discard new), objects expiring `ttl_s` after they were put (None: never).

    JetStream reserves `max_bytes` of its file storage for the bucket when it is made; a server without
    that much room left refuses it, and the service cannot start: ConfigurationError naming `setting`,
    the size's setting, instead of the server's bare "insufficient storage resources". With
    SWITCHYARD_BUS_PROVISIONED it is only checked (provisioning.py)."""
    config = provisioning.object_config(
        bucket, description=description, max_bytes=max_bytes, replicas=replicas, ttl_s=ttl_s
    )
    await provisioning.prepare(js, config, setting=setting)


async def describe(js: JetStreamContext, bucket: str, name: str) -> api.ObjectInfo:
    """The object's description (size, chunks, digest, nuid). ObjectGone when there is none, or it says
    the object was deleted; ObjectForged (counted, logged) when the server stored it for a client."""
    try:
        found = await js.get_last_msg(f"OBJ_{bucket}", meta_subject(bucket, name))  # the stored headers
    except NotFoundError:
        raise ObjectGone(f"the object {name!r} is not in {bucket} (expired, deleted or never kept)") from None
    if kv_guard.forged(found.headers, found.data):
        raise _refused(bucket, name, "its description", found.seq, META_REASON)
    try:
        info: api.ObjectInfo = api.ObjectInfo.from_response(json.loads(found.data or b""))
    except (ValueError, TypeError, KeyError) as exc:
        raise ObjectUnreadable(f"the object {name!r} has an unreadable description: {exc}") from None
    if info.deleted or not info.nuid:
        raise ObjectGone(f"the object {name!r} was deleted from {bucket}")
    return info


def chunks(
    js: JetStreamContext, bucket: str, info: api.ObjectInfo, *, timeout_s: float = READ_TIMEOUT_S
) -> AsyncIterator[bytes]:
    """The object's chunks in order, each fetched when the caller asks for it (nothing is read ahead, and
    nothing holds the object between asks), then their size and SHA-256 checked against `info`
    (ObjectCorrupt). ObjectGone when one is missing (the object was deleted, expired or replaced
    meanwhile); ObjectForged (counted, logged) for a chunk the server stored for a client, before its bytes
    are handed on; TimeoutError when the store does not answer within `timeout_s` (the bus, briefly:
    reading again may work)."""
    return checked(_fetched(js, bucket, info, timeout_s), info)


async def checked(chunks: AsyncIterable[bytes], info: api.ObjectInfo) -> AsyncIterator[bytes]:
    """`chunks` as they come, then ObjectCorrupt when their size and SHA-256 are not those of `info`."""
    digest, size = hashlib.sha256(), 0
    async for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    stored = (info.digest or "").partition("=")[2]  # `SHA-256=<url-safe base64>`
    if size != info.size or base64.urlsafe_b64encode(digest.digest()).decode() != stored.strip():
        raise ObjectCorrupt(
            f"the object {info.name!r} of {info.bucket}: its bytes do not match its size and digest"
        )


async def _fetched(
    js: JetStreamContext, bucket: str, info: api.ObjectInfo, timeout_s: float
) -> AsyncIterator[bytes]:
    stream, subject = f"OBJ_{bucket}", chunk_subject(bucket, info.nuid or "")
    after = 0  # the stream sequence of the chunk last read
    for got in range(info.chunks or 0):
        try:
            async with asyncio.timeout(timeout_s):
                msg = await js.get_msg(stream, after + 1, subject=subject, next=True)  # the stored headers
        except NotFoundError:
            msg = None
        except nats.errors.TimeoutError:
            raise TimeoutError(
                f"the object {info.name!r}: chunk {got + 1} of {info.chunks} not read"
            ) from None
        if msg is None or msg.seq is None:
            raise ObjectGone(
                f"the object {info.name!r} lost its chunks while read ({got} of {info.chunks}): "
                "expired, deleted or replaced"
            )
        if kv_guard.stamped(msg.headers) or not msg.data:
            raise _refused(bucket, info.name, f"chunk {got + 1} of {info.chunks}", msg.seq, CHUNK_REASON)
        after = msg.seq
        yield msg.data


async def read(js: JetStreamContext, bucket: str, name: str, *, timeout_s: float = READ_TIMEOUT_S) -> bytes:
    """The whole object's bytes, checked against its size and digest (`describe`, `chunks`)."""
    info = await describe(js, bucket, name)
    return b"".join([chunk async for chunk in chunks(js, bucket, info, timeout_s=timeout_s)])


async def names(js: JetStreamContext, bucket: str) -> list[str]:
    """The name of every meta in the bucket (objects deleted too), from its stream's subjects: nats-py's
    `list` (a watch of the metas) never ends when the newest meta is not one (an API answer stored there)."""
    state = (await js.stream_info(f"OBJ_{bucket}", subjects_filter=f"$O.{bucket}.M.>")).state
    found = []
    for subject in sorted(state.subjects or ()):
        encoded = subject.rpartition(".")[2]
        with contextlib.suppress(ValueError):
            found.append(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode())
    return found


async def listed(js: JetStreamContext, bucket: str) -> list[api.ObjectInfo]:
    """The objects in the bucket (not deleted), each from its meta (`describe`): a forged one is left out
    (counted, logged), and so is an unreadable one."""
    out = []
    for name in await names(js, bucket):
        with contextlib.suppress(ObjectGone, ObjectUnreadable):
            out.append(await describe(js, bucket, name))
    return out


async def delete(js: JetStreamContext, bucket: str, name: str) -> bool:
    """Deletes the object as nats-py's `delete` does (a deletion meta in place of its meta, then its chunks
    purged); False when there is none. A meta that is forged or unreadable names no chunks of its own
    (perhaps another object's): it is replaced alone, and the object's real chunks, which no meta names
    any more, are left to the bucket's TTL or the files' sweep of orphans."""
    try:
        nuid = (await describe(js, bucket, name)).nuid or ""
    except ObjectGone:
        return False
    except ObjectUnreadable:
        nuid = ""
    marker = api.ObjectInfo(name=name, bucket=bucket, nuid=nuid, size=0, chunks=0, digest="", deleted=True)
    try:
        await js.publish(
            meta_subject(bucket, name),
            json.dumps(marker.as_dict()).encode(),
            headers={api.Header.ROLLUP: "sub"},
        )
    finally:
        if nuid:
            await js.purge_stream(f"OBJ_{bucket}", subject=chunk_subject(bucket, nuid))
    return True


async def put(js: JetStreamContext, bucket: str, name: str, data: bytes | IO[bytes]) -> api.ObjectInfo:
    """nats-py's `put` (bytes, or a blocking reader read in a thread), replacing the object `name`, whose
    chunks it purges once the new ones are stored: a forged or unreadable meta of that name is purged
    first, so that the put purges no chunks it names (another object's)."""
    try:
        await describe(js, bucket, name)
    except ObjectGone:
        pass
    except ObjectUnreadable:
        await js.purge_stream(f"OBJ_{bucket}", subject=meta_subject(bucket, name))
    store = ObjectStore(name=bucket, stream=f"OBJ_{bucket}", js=js)
    return await store.put(name, data)  # type: ignore[arg-type]  # nats-py takes any reader


def _refused(bucket: str, name: str | None, what: str, seq: int | None, reason: str) -> ObjectForged:
    REFUSED.labels(f"$O.{bucket}", reason).inc()
    log.warning(
        "refused %s (sequence %s) of the object %s in the object store %s: stored by the server on a "
        "client's behalf (a JetStream API answer), not written by a writer of the bucket",
        what,
        seq,
        name,
        bucket,
    )
    return ObjectForged(
        f"the object {name!r} of {bucket} was overwritten by the server on a client's behalf ({what} is a "
        "JetStream API answer, not what its writer stored): it cannot be read"
    )


async def write(
    js: JetStreamContext,
    bucket: str,
    name: str,
    data: AsyncIterable[bytes],
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> api.ObjectInfo:
    """Stores the object `name` (a new name: an object of that name is not replaced) from `data` as it
    comes, holding at most one chunk: its chunks on `$O.<bucket>.C.<nuid>`, then its description (size,
    chunks, SHA-256) on its meta subject, as nats-py's `put` writes them. Whatever stops it before the
    description is stored (`data` raising, the store refusing a chunk: nats-py's APIError, cancellation)
    purges the chunks it sent, then raises; a process that dies meanwhile leaves them to whoever sweeps
    chunks no description names."""
    nuid = NUID().next().decode()
    stream, subject = f"OBJ_{bucket}", chunk_subject(bucket, nuid)
    digest, sizes = hashlib.sha256(), []
    pending = bytearray()

    async def send(chunk: bytes) -> None:
        await js.publish(subject, chunk)
        digest.update(chunk)
        sizes.append(len(chunk))

    try:
        async for part in data:
            pending += part
            while len(pending) >= chunk_bytes:
                await send(bytes(pending[:chunk_bytes]))
                del pending[:chunk_bytes]
        if pending:
            await send(bytes(pending))
        info = api.ObjectInfo(
            name=name,
            bucket=bucket,
            nuid=nuid,
            size=sum(sizes),
            chunks=len(sizes),
            mtime=datetime.now(UTC).isoformat(),
            digest=f"SHA-256={base64.urlsafe_b64encode(digest.digest()).decode()}",
            options=api.ObjectMetaOptions(max_chunk_size=chunk_bytes),
        )
        await js.publish(
            meta_subject(bucket, name),
            json.dumps(info.as_dict()).encode(),
            headers={api.Header.ROLLUP: "sub"},
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await js.purge_stream(stream, subject=subject)
        raise
    return info
