"""Reading an object of a JetStream object store fast, chunk by chunk.

nats-py's `ObjectStore.get` (an ordered push consumer) stalls ~250 ms per few MiB on large objects (~1 s
for 25 MiB, 38 s for 100 MiB), and holds the whole object. Here the object's meta (the last message on
`$O.<bucket>.M.<base64 name>`) says which chunks are its (`$O.<bucket>.C.<nuid>`), and a pull consumer of
their own fetches them in batches: 25 MiB in 60-80 ms; `chunks` yields them as they come, so a caller can
pass them on without holding the object. The stream of bucket `b` is `OBJ_b`, as every NATS client names it.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator

import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError, ServerError

from switchyard.common.errors import ConfigurationError

FETCH_BATCH = 256  # chunks (of 128 KiB) asked for at once
READ_TIMEOUT_S = 5.0  # a chunk that does not come within this long is missing (expired or replaced)
NO_ROOM = 10047  # JetStream's error code: "insufficient storage resources available"


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
    the size's setting, instead of the server's bare "insufficient storage resources"."""
    config = api.StreamConfig(
        name=f"OBJ_{bucket}",
        description=description,
        subjects=[f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"],
        max_age=ttl_s,
        max_bytes=max_bytes,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        discard=api.DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        allow_direct=True,
    )
    try:
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
    except ServerError as exc:
        if exc.err_code != NO_ROOM:
            raise
        raise ConfigurationError(
            f"JetStream has no room for the object store {bucket} ({max_bytes / 2**30:.2f} GiB, {setting}): "
            "its file storage (nats-server's max_file_store; by default 75 % of the disk that was free when "
            f"it started) is taken by what other streams reserve. Lower {setting} or give the nats-server "
            "more room"
        ) from exc


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
    """The object's chunks in order, through a pull consumer of their own, fetched in batches. ObjectGone
    when one does not come within `timeout_s` (the object expired or was replaced while read)."""
    stream, expected = f"OBJ_{bucket}", info.chunks or 0
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.ALL,
        inactive_threshold=timeout_s,
        mem_storage=True,
        num_replicas=1,
    )
    sub = await js.pull_subscribe(f"$O.{bucket}.C.{info.nuid}", stream=stream, config=config)
    got = 0
    try:
        while got < expected:
            try:
                msgs = await sub.fetch(min(FETCH_BATCH, expected - got), timeout=timeout_s)
            except nats.errors.TimeoutError:
                raise ObjectGone(
                    f"the object {info.name!r} lost its chunks while read ({got} of {expected}): "
                    "expired or replaced"
                ) from None
            for msg in msgs:
                got += 1
                yield msg.data
    finally:
        await sub.unsubscribe()
        if config.name is not None:  # pull_subscribe named the consumer; gone by itself if this fails
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await js.delete_consumer(stream, config.name)


async def read(js: JetStreamContext, bucket: str, name: str, *, timeout_s: float = READ_TIMEOUT_S) -> bytes:
    """The whole object's bytes (its digest is the caller's to check)."""
    info = await describe(js, bucket, name)
    return b"".join([chunk async for chunk in chunks(js, bucket, info, timeout_s=timeout_s)])
