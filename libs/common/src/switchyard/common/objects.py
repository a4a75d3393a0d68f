"""Reading an object of a JetStream object store fast, chunk by chunk, and writing one as its bytes come.

nats-py's `ObjectStore.get` (an ordered push consumer) stalls ~250 ms per few MiB on large objects (~1 s
for 25 MiB, 38 s for 100 MiB), and holds the whole object. Here the object's meta (the last message on
`$O.<bucket>.M.<base64 name>`) says which chunks are its (`$O.<bucket>.C.<nuid>`), and `chunks` fetches
them one at a time, each when it is asked for, by a direct get of the next message on that subject (the
buckets allow direct gets): 25 MiB in 75 ms, as fast as a pull consumer fetching 256 at once (45-115 ms),
but only one chunk is held, and a reader may pause between chunks for as long as it likes (a batch's
runner reads its input file over hours, as slots free up; a pull consumer is deleted once idle). The
stream of bucket `b` is `OBJ_b`, as every NATS client names it.

nats-py's `ObjectStore.put` takes bytes or a blocking reader; `write` takes the bytes as an async iterable
(a request's body as it arrives), and stores them as nats-py does, so every client reads the object.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime

import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from nats.nuid import NUID

from switchyard.common import provisioning

READ_TIMEOUT_S = 5.0  # a chunk that does not come within this long: the store does not answer
CHUNK_BYTES = 128 * 1024  # an object's chunks, as nats-py writes them


class ObjectGone(LookupError):
    """The object is not in the store (expired, deleted, never put), or lost its chunks while read."""


class ObjectUnreadable(ValueError):
    """The object's description cannot be read."""


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
    the object was deleted."""
    meta = f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
    try:
        found = await js.get_last_msg(f"OBJ_{bucket}", meta)
    except NotFoundError:
        raise ObjectGone(f"the object {name!r} is not in {bucket} (expired, deleted or never kept)") from None
    try:
        info: api.ObjectInfo = api.ObjectInfo.from_response(json.loads(found.data or b""))
    except (ValueError, TypeError, KeyError) as exc:
        raise ObjectUnreadable(f"the object {name!r} has an unreadable description: {exc}") from None
    if info.deleted or not info.nuid:
        raise ObjectGone(f"the object {name!r} was deleted from {bucket}")
    return info


async def chunks(
    js: JetStreamContext, bucket: str, info: api.ObjectInfo, *, timeout_s: float = READ_TIMEOUT_S
) -> AsyncIterator[bytes]:
    """The object's chunks in order, each fetched when the caller asks for it (nothing is read ahead, and
    nothing holds the object between asks). ObjectGone when one is missing (the object was deleted,
    expired or replaced meanwhile); TimeoutError when the store does not answer within `timeout_s` (the
    bus, briefly: reading again may work)."""
    stream, subject = f"OBJ_{bucket}", f"$O.{bucket}.C.{info.nuid}"
    after = 0  # the stream sequence of the chunk last read
    for got in range(info.chunks or 0):
        try:
            async with asyncio.timeout(timeout_s):
                msg = await js.get_msg(stream, after + 1, subject=subject, direct=True, next=True)
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
        after = msg.seq
        yield msg.data or b""


async def read(js: JetStreamContext, bucket: str, name: str, *, timeout_s: float = READ_TIMEOUT_S) -> bytes:
    """The whole object's bytes (its digest is the caller's to check)."""
    info = await describe(js, bucket, name)
    return b"".join([chunk async for chunk in chunks(js, bucket, info, timeout_s=timeout_s)])


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
    stream, subject = f"OBJ_{bucket}", f"$O.{bucket}.C.{nuid}"
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
        meta = f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
        await js.publish(meta, json.dumps(info.as_dict()).encode(), headers={api.Header.ROLLUP: "sub"})
    except BaseException:
        with contextlib.suppress(Exception):
            await js.purge_stream(stream, subject=subject)
        raise
    return info
