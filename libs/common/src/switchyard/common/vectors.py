"""An embedding task's vectors on the bus: little-endian float32 rows, row-major, with their SHA-256.

Small results travel inline, base64 in `TaskCompleted.embedding.data` (`keep` puts up to `inline_bytes` of
raw vectors there, by default `INLINE_BYTES`, 256 KiB: 170 vectors of 384 numbers, 42 of 1,536, 21 of
3,072; an event of ~350 KB, which fits even a nats-server's default 1 MiB payload). Larger ones go to the
JetStream object store `switchyard-embeddings` (`subjects.OBJ_EMBEDDINGS`, stream `OBJ_switchyard-embeddings`)
under a name made of the tenant and the task id (`object_name`), and the result carries that name in
`embedding.object` (with `count`, `dimensions`, `sha256`). The bucket lies outside the `SWITCHYARD` stream:
audit and billing never receive the numbers, and every object expires after the bucket's TTL (the gateway
deletes the one it read). A bucket that is full refuses a put (the task then fails
`embedding_result_unavailable`, its calls billed).

A batch line's task (`TaskSubmitted.batch`) is read when its batch finishes, hours later: its vectors go to
the object store `switchyard-batch-vectors` (`BATCH_BUCKET`, made by the gateway, objects kept 3 days)
and its result says so in `embedding.bucket`; when that store is full or missing they go to
`switchyard-embeddings` as any task's (the batch's runner copies them out in time if it is running).

`MAX_RESULT_BYTES` (32 MiB: 2,048 vectors of 4,096 numbers; OpenAI's largest request, 2,048 of 3,072, is
24 MiB) bounds one result. The router and the gateway refuse a request whose vectors would be larger (they
know their count and length), the executor a reply that is (a model the policy does not list).

Reading a result from another system: `data` is base64 of the raw bytes. For `object`, any NATS client's
object store reads the bucket that `bucket` names (absent: `switchyard-embeddings`): with nats-py, `(await
js.object_store(bucket)).get(name)` returns the bytes (its own digest checked); check them against
`sha256` and read `count x dimensions` float32 numbers. nats-py's `get` stalls on large objects, so
`fetch` here reads the object's chunks one by one by message get instead (`objects.py`, which refuses a
meta or chunk the server stored on a client's behalf): 25 MiB in ~0.5 s.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from typing import Protocol

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from switchyard.common import objects
from switchyard.common.events import EmbeddingResult
from switchyard.common.subjects import OBJ_BATCH_VECTORS, OBJ_EMBEDDINGS

FLOAT_BYTES = 4
MAX_RESULT_BYTES = 32 * 1024 * 1024
INLINE_BYTES = 256 * 1024
BUCKET = OBJ_EMBEDDINGS
DESCRIPTION = "Switchyard: embedding results too large for their result event"
BATCH_BUCKET = OBJ_BATCH_VECTORS
STREAM = f"OBJ_{BUCKET}"  # the object store's stream, as every NATS client names it
READ_TIMEOUT_S = objects.READ_TIMEOUT_S  # a chunk that does not come within this long is missing (expired)
log = logging.getLogger(__name__)
_SAFE = re.compile(r"[-_a-zA-Z0-9]{1,64}")
_UNSAFE = re.compile(r"[^-_a-zA-Z0-9]")


class VectorsUnreadable(Exception):
    """A result's vectors cannot be read."""


class VectorsCorrupt(VectorsUnreadable, ValueError):
    """The numbers do not match the size or the digest they came with."""


class VectorsGone(VectorsUnreadable, LookupError):
    """The object holding the vectors is not in the store (expired, deleted, or never kept)."""


class VectorsNotKept(Exception):
    """The vectors could not be put in the object store (the bucket is full, the bus is down)."""


class Keep(Protocol):
    """What the executor calls to make a result of its vectors (`keep`, bound to a JetStream context)."""

    async def __call__(
        self, raw: bytes, *, count: int, dimensions: int, name: str, batch: bool = False
    ) -> EmbeddingResult: ...


def result_bytes(count: int, dimensions: int) -> int:
    return count * dimensions * FLOAT_BYTES


def fits(count: int, dimensions: int) -> bool:
    return result_bytes(count, dimensions) <= MAX_RESULT_BYTES


def most_inputs(dimensions: int) -> int:
    """How many vectors of this length one result may hold."""
    return max(1, MAX_RESULT_BYTES // (dimensions * FLOAT_BYTES))


def object_name(tenant_id: str, task_id: str) -> str:
    """The object of a task's vectors: `<tenant>.<task id>`, each part kept as it is when it is made of
    letters, digits, `-` and `_` (a gateway's ids are), else cleaned and suffixed with a hash of itself. The
    same task gives the same name, so a redelivered run overwrites its own object."""
    return f"{_part(tenant_id)}.{_part(task_id)}"


def _part(value: str) -> str:
    if _SAFE.fullmatch(value):
        return value
    return f"{_UNSAFE.sub('_', value)[:40]}-{hashlib.sha256(value.encode()).hexdigest()[:16]}"


def pack(vectors: bytes, *, count: int, dimensions: int) -> EmbeddingResult:
    """`count` rows of `dimensions` float32 numbers (little-endian, row-major) as an inline result."""
    _check_size(vectors, count, dimensions)
    return EmbeddingResult(
        count=count,
        dimensions=dimensions,
        sha256=hashlib.sha256(vectors).hexdigest(),
        data=base64.b64encode(vectors).decode("ascii"),
    )


def unpack(result: EmbeddingResult) -> bytes:
    """The raw rows of an inline result, checked against its digest."""
    if result.data is None:
        raise ValueError(f"the vectors are in the object {result.object!r}: read them with `fetch`")
    raw = base64.b64decode(result.data, validate=True)
    _check(raw, result)
    return raw


async def inline(
    raw: bytes, *, count: int, dimensions: int, name: str, batch: bool = False
) -> EmbeddingResult:
    """Every result inline (a `Keep` with no store, for tests: a large one makes an event over the bus's
    payload limit)."""
    return pack(raw, count=count, dimensions=dimensions)


async def open_store(js: JetStreamContext, *, ttl_s: float, max_bytes: int, replicas: int) -> None:
    """Creates the bucket, or brings an existing one to this configuration (safe from every executor on
    every start; they must agree on it): file storage, objects expiring `ttl_s` after they were put, at
    most `max_bytes` in all, a put into a full bucket refused (discard new)."""
    await objects.open_bucket(
        js,
        BUCKET,
        description=DESCRIPTION,
        ttl_s=ttl_s,
        max_bytes=max_bytes,
        replicas=replicas,
        setting="SWITCHYARD_EMBEDDING_STORE_MAX_BYTES",
    )


async def keep(
    js: JetStreamContext,
    raw: bytes,
    *,
    count: int,
    dimensions: int,
    name: str,
    inline_bytes: int = INLINE_BYTES,
    batch: bool = False,
) -> EmbeddingResult:
    """The result of `raw`: inline up to `inline_bytes`, else put as the object `name` (replacing one of
    that name) in the bucket, or for a `batch` line in BATCH_BUCKET, BUCKET when that put fails.
    VectorsNotKept when the put fails."""
    if len(raw) <= inline_bytes:
        return pack(raw, count=count, dimensions=dimensions)
    _check_size(raw, count, dimensions)
    bucket = BUCKET
    if batch:
        try:
            await objects.put(js, BATCH_BUCKET, name, raw)
            bucket = BATCH_BUCKET
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning(
                "%s: not put in %s (%r): put in %s, which expires it", name, BATCH_BUCKET, exc, BUCKET
            )
    if bucket == BUCKET:
        try:
            await objects.put(js, BUCKET, name, raw)
        except (nats.errors.Error, TimeoutError) as exc:  # nats-py's put removes the chunks it had sent
            reason = str(exc) or type(exc).__name__
            message = f"{len(raw)} bytes could not be put in the object store {BUCKET}: {reason}"
            raise VectorsNotKept(message) from exc
    return EmbeddingResult(
        count=count,
        dimensions=dimensions,
        sha256=hashlib.sha256(raw).hexdigest(),
        object=name,
        bucket=None if bucket == BUCKET else BATCH_BUCKET,
    )


async def fetch(js: JetStreamContext, result: EmbeddingResult, *, timeout_s: float = READ_TIMEOUT_S) -> bytes:
    """The raw rows of a result, inline or stored, checked against its size and digest. VectorsGone when
    the object is not there (or vanishes while it is read), VectorsCorrupt when its bytes do not match."""
    if result.object is None:
        return unpack(result)
    raw = await _read(js, result.bucket or BUCKET, result.object, timeout_s=timeout_s)
    _check(raw, result)
    return raw


async def discard(js: JetStreamContext, result: EmbeddingResult) -> None:
    """Deletes a result's object once it has been read (nothing for an inline result or a gone object)."""
    if result.object is not None:
        await delete(js, result.object, bucket=result.bucket or BUCKET)


async def delete(js: JetStreamContext, name: str, *, bucket: str = BUCKET) -> None:
    """Deletes the object `name` of `bucket`, if it is there (never the chunks a forged meta names)."""
    await objects.delete(js, bucket, name)


async def forget_tenant(js: JetStreamContext, tenant_id: str) -> int:
    """Deletes every object of the tenant (an erasure: its names begin with the tenant's part) from both
    buckets; how many."""
    prefix = f"{_part(tenant_id)}."
    removed = 0
    for bucket in (BATCH_BUCKET, BUCKET):
        try:
            stored = await objects.names(js, bucket)  # forged metas too (nats-py's `list` may hang on one)
        except NotFoundError:  # no such bucket
            continue
        for name in stored:
            if name.startswith(prefix) and await objects.delete(js, bucket, name):
                removed += 1
    return removed


async def _read(js: JetStreamContext, bucket: str, name: str, *, timeout_s: float) -> bytes:
    try:
        return await objects.read(js, bucket, name, timeout_s=timeout_s)
    except objects.ObjectGone as exc:
        raise VectorsGone(str(exc)) from None
    except objects.ObjectUnreadable as exc:
        raise VectorsCorrupt(str(exc)) from None


def _check_size(raw: bytes, count: int, dimensions: int) -> None:
    if len(raw) != result_bytes(count, dimensions):
        raise ValueError(f"{len(raw)} bytes are not {count} x {dimensions} float32 numbers")


def _check(raw: bytes, result: EmbeddingResult) -> None:
    if len(raw) != result_bytes(result.count, result.dimensions):
        raise VectorsCorrupt(f"{len(raw)} bytes, not {result.count} x {result.dimensions} float32 numbers")
    if hashlib.sha256(raw).hexdigest() != result.sha256:
        raise VectorsCorrupt("the vectors do not match their sha256")
