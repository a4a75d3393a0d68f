"""KV reads that refuse what the JetStream server stored on a client's behalf (a forged revision).

nats-server does not check the reply subject of a request to the JetStream API, and publishes its answer
there; a stream whose subjects match stores it. So a user that may only read a bucket can have a new
revision of any key of it written: a direct get of a key it may read answered to `$KV.<bucket>.<key>`
(the stored value, as it was, with the server's headers added), or any other API request answered there
(the API's JSON). Measured on nats-server 2.15 (tests/integration/common/test_kv_guard.py), a revision
stored that way carries marks a publish cannot give it (the server sets these headers on its answers
and strips none of them when it stores one), and a legitimate put carries no header, a delete or purge
only `KV-Operation` (and `Nats-Rollup`):
- a direct get's answer: `Nats-Stream`, `Nats-Subject`, `Nats-Sequence`, `Nats-Time-Stamp` (a batch's
  `Nats-Num-Pending`, `Nats-Last-Sequence`, `Nats-UpTo-Sequence`);
- a direct get's miss (a `404` status line, which the stream does not keep): no header and no value, so
  the buckets read through here never hold an empty value (a put of b"" is refused as one);
- another API answer: a value that is the API's envelope, `{"type":"io.nats.jetstream.api.v1.`;
- a publish's acknowledgement (any user that may publish into a stream: a tenant-scoped integrator its
  own tenant's tasks), sent to the publish's reply subject: no header, a value of the ack's shape alone
  (`{"stream": ..., "seq": ...}`, maybe `duplicate`, `domain`..., or an `error` beside them).
A publish with those headers would be stored too, but only a user that may write the bucket can publish
one, and it could write any value anyway.

nats-py's KeyValue drops the headers from its entries, so the readers whose value grants, revokes or
redirects something read through here instead: `watch` (nats-py's ordered consumer, with a callback that
sees the headers) and `read` (a message get, `STREAM.MSG.GET`: a direct get's answer shows the server's
headers, not the stored ones). A forged revision is skipped, counted in
`switchyard_bus_refused_messages_total{subscription="$KV.<bucket>", reason="forged_kv_entry"}` and
logged with its bucket and key (never its value); a watcher delivers nothing for it, so a reader keeps
the value it held. It still replaces the key's stored value (a bucket of history 1 keeps only it): a
`read` raises `ForgedEntry` until the key's owner writes it again. Owners that can restore a value
watch for that (`watch(..., on_forged=...)`) and write over it at once (kv_repair.py; the tenant
registry from the gateway's database, access/registry.py). The object stores are open the same
way: objects.py refuses a forged object's meta by `forged` and a chunk by `stamped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import orjson
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import NotFoundError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue

from switchyard.common.bus_guard import REFUSED

log = logging.getLogger(__name__)

REASON = "forged_kv_entry"
SERVER_HEADERS = frozenset(
    {
        "Nats-Stream",
        "Nats-Subject",
        "Nats-Sequence",
        "Nats-Time-Stamp",
        "Nats-Num-Pending",
        "Nats-Last-Sequence",
        "Nats-UpTo-Sequence",
        "Status",  # a status line, as nats-py parses it (a direct get's miss: 404)
    }
)
API_ANSWER = b'{"type":"io.nats.jetstream.api.v1.'
# A publish's ack as nats-server writes it (JSPubAckResponse: `error` first when refused, then PubAck's
# fields); a value holding these fields alone, `stream` and `seq` among them, is one.
PUB_ACK_STARTS = (b'{"stream":', b'{"error":')
PUB_ACK_FIELDS = frozenset({"error", "stream", "seq", "domain", "duplicate", "val", "batch", "count"})
MARKER_REASON = "Nats-Marker-Reason"  # nats-server 2.11+: an expiry's marker
WATCH_IDLE_S = 5 * 60.0  # a watch's consumer goes this long after its client does (as nats-py's)


class ForgedEntry(Exception):
    """The key's newest revision was stored by the server on a client's behalf (counted, logged)."""

    def __init__(self, bucket: str, key: str, revision: int | None) -> None:
        super().__init__(f"{bucket}/{key} revision {revision}")
        self.revision = revision


def stamped(headers: Mapping[str, str] | None) -> bool:
    """True when a stored message's headers carry the server's marks of an answer (a direct get's, a
    status): a publish by a client never does (objects.py checks an object's chunks with it too)."""
    return bool(headers) and not SERVER_HEADERS.isdisjoint(headers or ())


def forged(headers: Mapping[str, str] | None, value: bytes | None) -> bool:
    """True when a stored KV revision (or an object's meta) with these headers and value is a server's
    answer, not a write."""
    if headers:
        return stamped(headers)
    return not value or value.startswith(API_ANSWER) or _publish_ack(value)


def _publish_ack(value: bytes) -> bool:
    if not value.startswith(PUB_ACK_STARTS):
        return False
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and {"stream", "seq"} <= data.keys() <= PUB_ACK_FIELDS


def refuse(bucket: str, key: str, revision: int | None) -> None:
    REFUSED.labels(f"$KV.{bucket}", REASON).inc()
    log.warning(
        "refused a forged revision %s of %s in the KV bucket %s: stored by the server on a client's "
        "behalf (a JetStream API answer), not written by a writer of the bucket",
        revision,
        key,
        bucket,
    )


def _operation(headers: Mapping[str, str] | None) -> str | None:
    if not headers:
        return None
    if KV_OP in headers:
        return headers[KV_OP]
    reason = headers.get(MARKER_REASON)
    if reason is None:
        return None
    return KV_DEL if reason == "Remove" else KV_PURGE


async def read(bucket: KeyValue, key: str) -> tuple[bytes | None, int | None]:
    """(value, revision) as `kv.read`, (None, None) for a key missing or deleted; raises ForgedEntry
    (counted, logged) when its newest revision is forged."""
    name = bucket._name
    try:
        msg = await bucket._js.get_msg(bucket._stream, subject=f"{bucket._pre}{key}", direct=False)
    except NotFoundError:
        return None, None
    headers = msg.headers
    if forged(headers, msg.data):
        refuse(name, key, msg.seq)
        raise ForgedEntry(name, key, msg.seq)
    if _operation(headers) in (KV_DEL, KV_PURGE):
        return None, None
    return msg.data or b"", msg.seq


async def read_over(bucket: KeyValue, key: str) -> tuple[bytes | None, int | None]:
    """`read` for a writer's compare-and-set (`kv.update(..., reader=read_over)`): a forged revision is
    no value, and the writer's write replaces it."""
    try:
        return await read(bucket, key)
    except ForgedEntry as forged_entry:
        return None, forged_entry.revision


async def watch(
    bucket: KeyValue,
    keys: str = ">",
    *,
    include_history: bool = False,
    on_forged: Callable[[str], None] | None = None,
    idle_s: float = WATCH_IDLE_S,
) -> KeyValue.KeyWatcher:
    """A watch as `bucket.watch(keys)`: each key's newest revision, then every change, then None once the
    initial values are through; forged revisions skipped (counted, logged), so what a reader holds for
    their key stays, and told to `on_forged` (the key) if given: a writer that can restore its value.
    nats-py's ordered consumer (it starts over after a gap or a reconnect); the server drops it `idle_s`
    after the watch stops (a read of the initial values alone: a few seconds, so its consumer does not
    linger with what is written after)."""
    js = bucket._js
    watcher = KeyValue.KeyWatcher(bucket)  # type: ignore[no-untyped-call]
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def deliver(msg: Msg) -> None:
        if not ready.done():
            await asyncio.wait_for(asyncio.shield(ready), timeout=js._timeout)
        meta = msg.metadata
        key = msg.subject[len(bucket._pre) :]
        if forged(msg.headers, msg.data):
            refuse(bucket._name, key, meta.sequence.stream)
            if on_forged is not None:
                on_forged(key)
        else:
            entry = KeyValue.Entry(
                bucket=bucket._name,
                key=key,
                value=msg.data,
                revision=meta.sequence.stream,
                delta=meta.num_pending,
                created=meta.timestamp,  # type: ignore[arg-type]  # nats-py gives a datetime too
                operation=_operation(msg.headers),
            )
            await watcher._updates.put(entry)
        if meta.num_pending == 0 and not watcher._init_done:
            await watcher._updates.put(None)
            watcher._init_done = True

    watcher._sub = await js.subscribe(
        f"{bucket._pre}{keys}",
        stream=bucket._stream,
        cb=deliver,
        ordered_consumer=True,
        deliver_policy=None if include_history else api.DeliverPolicy.LAST_PER_SUBJECT,
        inactive_threshold=idle_s,
    )
    try:
        pending = (await watcher._sub.consumer_info()).num_pending
    except BaseException:
        ready.cancel()
        await watcher._sub.unsubscribe()
        raise
    ready.set_result(None)
    if pending == 0 and watcher._sub.delivered == 0 and not watcher._init_done:
        await watcher._updates.put(None)
        watcher._init_done = True
    return watcher


async def on_forged(bucket: KeyValue, repair: Callable[[str], None], *, name: str) -> asyncio.Task[None]:
    """For a writer that can restore its keys: a watch of the whole bucket kept only to call `repair`
    with the key of each forged revision (those there at start too). The task draining it; cancel it
    (`background.cancel`) to stop the watch."""
    watcher = await watch(bucket, on_forged=repair)

    async def drain() -> None:
        try:
            async for _ in watcher:
                pass
        finally:  # at shutdown the connection may be gone already: a stop must not fail the owner's
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    return asyncio.create_task(drain(), name=name)
