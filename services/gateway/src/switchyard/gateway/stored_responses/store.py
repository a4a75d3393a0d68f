"""Stored responses in JetStream KV (bucket `switchyard-responses`), shared by every replica.

A record is one response as its client received it and the whole input it answered: every item of the
conversation up to it, each with its id (the previous response's input and output included, when the
request named one). So a follow-up (`previous_response_id`) reads one record, whatever the length of its
chain, and a record stays whole when an earlier response of its chain is deleted or expires. The cost is
storage that grows with the square of a chain's length; records are zlib-compressed, expire after
SWITCHYARD_RESPONSES_KEEP_S (30 days, as OpenAI keeps them) and the bucket is capped at
SWITCHYARD_RESPONSES_BUCKET_BYTES (a full bucket stores nothing more until records expire: the answers
still go out, marked `store: false`). One organisation may hold SWITCHYARD_RESPONSES_ORG_BYTES of it, so
that none fills it for all the others.

A record's key is `<organisation hash>.<hash of organisation and id>` (`record_key`): another
organisation's response is not found, neither appears in clear, and one organisation's records are listed
by the prefix alone (`erase.erase_organisation`: what an erasure request needs). Records written before
that layout are under the second hash alone (`kv.tenant_key`): every read and delete looks there too
(`locate`), until they expire. The organisation's usage record stays there (its counts go on across the
upgrade).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import zlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson
from nats.errors import Error as BusError
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, ServerError
from nats.js.kv import KeyValue

from switchyard.common import kv, provisioning, subjects
from switchyard.common.errors import TransientError
from switchyard.common.provisioning import NO_ROOM, no_room
from switchyard.gateway.metrics import STORED_RESPONSES
from switchyard.gateway.responses import RESPONSE_ID

if TYPE_CHECKING:
    from switchyard.gateway.access.fence import ErasedFence

log = logging.getLogger(__name__)

KEEP_S = 30 * 24 * 3600.0
DESCRIPTION = "Switchyard: stored Responses API responses and their input items"
SETTING = "SWITCHYARD_RESPONSES_BUCKET_BYTES"
DAY_S = 86400
USAGE = "\x00usage"  # an organisation's stored bytes by day, under its hashed key (never a response id)
HEADROOM = 4096  # of a bus message, for the KV put's subject and headers
_LEVEL = 1  # zlib: conversations are repetitive text; level 1 already takes most of it, fast
# Records larger than this are compressed and read in a thread (zlib lets go of the GIL): one of a few MB of
# images takes ~0.4 s to compress, which on the event loop every request of the replica would wait.
OFF_LOOP_BYTES = 64 * 1024


def org_prefix(tenant_id: str) -> str:
    """The first token of every key of the organisation's records: a hash, so no tenant id in clear."""
    return hashlib.sha256(f"switchyard-org\x00{tenant_id}".encode()).hexdigest()[:32]


def record_key(tenant_id: str, name: str) -> str:
    """Where the organisation's record `name` (a response's or a conversation's id) is written."""
    return f"{org_prefix(tenant_id)}.{kv.tenant_key(tenant_id, name)}"


@dataclass(frozen=True)
class StoredResponse:
    """A response (`response`: the body its client received) and the input items it answered."""

    response: dict[str, Any]
    input: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return str(self.response["id"])

    def to_bytes(self) -> bytes:
        return zlib.compress(self._json(), _LEVEL)

    async def encoded(self) -> bytes:
        """`to_bytes`, in a thread when large."""
        data = self._json()
        if len(data) <= OFF_LOOP_BYTES:
            return zlib.compress(data, _LEVEL)
        return await asyncio.to_thread(zlib.compress, data, _LEVEL)

    def _json(self) -> bytes:
        return orjson.dumps({"response": self.response, "input": self.input})

    @classmethod
    def from_bytes(cls, raw: bytes) -> StoredResponse:
        data = orjson.loads(zlib.decompress(raw))
        return cls(response=data["response"], input=data["input"])

    @classmethod
    async def decoded(cls, raw: bytes) -> StoredResponse:
        """`from_bytes`, in a thread when large."""
        if len(raw) <= OFF_LOOP_BYTES:
            return cls.from_bytes(raw)
        return await asyncio.to_thread(cls.from_bytes, raw)

    def item(self, item_id: str) -> dict[str, Any] | None:
        """An input or output item of this response, by its id."""
        return self._items.get(item_id)

    @cached_property
    def _items(self) -> dict[Any, dict[str, Any]]:
        """Items by id, the first of an id (read once: a request may reference thousands of items)."""
        items: dict[Any, dict[str, Any]] = {}
        for item in (*self.input, *self.response.get("output", ())):
            items.setdefault(item.get("id"), item)
        return items


class ResponseStore:
    """`org_bytes`: what one organisation may hold of the bucket (None: no share, as for a store that only
    reads and deletes), counted per day of writing over the last `keep_s` (deleted records still count
    until they would have expired: the count only ever over-states)."""

    def __init__(
        self,
        bucket: KeyValue,
        *,
        max_value_bytes: int,
        org_bytes: int | None = None,
        keep_s: float = KEEP_S,
    ) -> None:
        self.bucket = bucket
        self.max_value_bytes = max_value_bytes
        self.org_bytes = org_bytes
        self.keep_s = keep_s
        self.fence: ErasedFence | None = None  # a record written as its organisation is erased is purged

    async def fenced(self, tenant_id: str, key: str, what: str) -> bool:
        """Asked right after writing the organisation's `key`: True when the organisation was erased
        meanwhile (access/fence.py), the key and its usage record then purged (no marker left)."""
        if self.fence is None or not await self.fence.undone(tenant_id, what):
            return False
        for written in (key, kv.tenant_key(tenant_id, USAGE)):
            await kv.purge_matching(self.bucket, written)
        return True

    async def put(self, tenant_id: str, record: StoredResponse) -> bool:
        """Keeps the record; False (logged) when it cannot be kept: larger than a bus message, over its
        organisation's share, the bucket full, or the bus not taking it (the bucket's stream gone, a
        timeout). The answer it holds has gone or goes out anyway, so nothing is raised: its task ran and is
        billed."""
        raw = await record.encoded()
        if len(raw) > self.max_value_bytes:
            log.warning(
                "response %s not stored: %d bytes compressed, over the bus's %d",
                record.id,
                len(raw),
                self.max_value_bytes,
            )
            STORED_RESPONSES.labels("too_large").inc()
            return False
        try:
            if not await self.count(tenant_id, len(raw)):
                log.warning(
                    "response %s not stored: its organisation holds its share of the bucket", record.id
                )
                STORED_RESPONSES.labels("over_share").inc()
                return False
            key = record_key(tenant_id, record.id)
            try:
                await self.bucket.put(key, raw)
            except BaseException:
                await self.count(tenant_id, -len(raw))  # a full bucket must not use up the share
                raise
            if await self.fenced(tenant_id, key, f"the response {record.id}"):
                STORED_RESPONSES.labels("refused").inc()
                return False
        except (BusError, TimeoutError, TransientError) as exc:
            log.warning("response %s not stored: %s", record.id, exc)
            STORED_RESPONSES.labels("refused").inc()
            return False
        STORED_RESPONSES.labels("stored").inc()
        return True

    async def count(self, tenant_id: str, size: int) -> bool:
        """Counts `size` bytes (below 0: given back) against the organisation's share, unless they would
        take it past it."""
        if self.org_bytes is None:
            return True
        today = int(time.time() // DAY_S)
        first = today - math.ceil(self.keep_s / DAY_S)  # earlier days' records have all expired
        share = self.org_bytes

        def count(current: bytes | None) -> tuple[bytes | None, bool]:
            days = {int(d): n for d, n in orjson.loads(current or b"{}").items() if int(d) >= first}
            if size > 0 and sum(days.values()) + size > share:
                return None, False
            days[today] = max(0, days.get(today, 0) + size)
            return orjson.dumps({str(d): n for d, n in days.items()}), True

        return await kv.update(self.bucket, kv.tenant_key(tenant_id, USAGE), count)

    async def get(self, tenant_id: str, response_id: str) -> StoredResponse | None:
        """The response stored under `response_id`; None for an id no response has (a conversation's, the
        usage record's, which the bucket holds too: not read, so nothing a client names is logged as a
        record that cannot be read)."""
        if not response_id.startswith(RESPONSE_ID):
            return None
        _, raw, _ = await self.locate(tenant_id, response_id)
        if not raw:
            return None
        try:
            return await StoredResponse.decoded(raw)
        except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError):
            log.error("stored response %s cannot be read: left out", response_id)
            return None

    async def delete(self, tenant_id: str, response_id: str) -> bool:
        """True when the response was there (and is gone now)."""
        if await self.get(tenant_id, response_id) is None:
            return False
        key, _, _ = await self.locate(tenant_id, response_id)
        await self.bucket.delete(key)
        return True

    async def locate(self, tenant_id: str, name: str) -> tuple[str, bytes | None, int | None]:
        """The key of the organisation's record `name`, its value and revision: under the current layout,
        else the earlier one; the current layout's key and Nones when it is in neither."""
        key = record_key(tenant_id, name)
        raw, revision = await kv.read(self.bucket, key)
        if raw:
            return key, raw, revision
        old = kv.tenant_key(tenant_id, name)
        old_raw, old_revision = await kv.read(self.bucket, old)
        if old_raw:
            return old, old_raw, old_revision
        return key, None, None


async def left_bucket(js: JetStreamContext, *, max_value_bytes: int) -> ResponseStore | None:
    """The bucket as an earlier configuration left it, for a deployment that stores no responses
    (SWITCHYARD_RESPONSES_STORE=false) to delete them on request; None when there is none. Neither created
    nor reconfigured."""
    try:
        bucket = await js.key_value(subjects.KV_RESPONSES)
    except BucketNotFoundError:
        return None
    return ResponseStore(bucket, max_value_bytes=max_value_bytes)


async def responses_bucket(
    js: JetStreamContext,
    *,
    keep_s: float,
    max_bytes: int,
    replicas: int,
    max_value_bytes: int,
    org_bytes: int | None = None,
) -> ResponseStore:
    """The store over the KV bucket, created on first use, or an existing one brought to this configuration
    (file storage, entries expiring `keep_s` after they were written, at most `max_bytes` in all).
    JetStream reserves `max_bytes` for the bucket: a server without the room is a ConfigurationError
    naming the setting. With SWITCHYARD_BUS_PROVISIONED it is only opened (provisioning.py)."""
    if provisioning.provisioned_only():
        info = await provisioning.check(
            js, responses_config(keep_s=keep_s, max_bytes=max_bytes, replicas=replicas)
        )
        _warn_full(info.state.bytes, max_bytes)
        bucket = await js.key_value(subjects.KV_RESPONSES)
        return ResponseStore(bucket, max_value_bytes=max_value_bytes, org_bytes=org_bytes, keep_s=keep_s)
    try:
        try:
            bucket = await js.key_value(subjects.KV_RESPONSES)
        except BucketNotFoundError:
            bucket = await js.create_key_value(
                api.KeyValueConfig(
                    bucket=subjects.KV_RESPONSES,
                    description=DESCRIPTION,
                    history=1,
                    ttl=keep_s,
                    max_bytes=max_bytes,
                    storage=api.StorageType.FILE,
                    replicas=replicas,
                )
            )
        else:
            info = await js.stream_info(f"KV_{subjects.KV_RESPONSES}")
            config = info.config
            if (config.max_age, config.max_bytes) != (keep_s, max_bytes):
                config.max_age, config.max_bytes = keep_s, max_bytes
                await js.update_stream(config)
            _warn_full(info.state.bytes, max_bytes)
    except ServerError as exc:
        if exc.err_code != NO_ROOM:
            raise
        raise no_room(f"the KV bucket {subjects.KV_RESPONSES}", max_bytes, SETTING) from exc
    return ResponseStore(bucket, max_value_bytes=max_value_bytes, org_bytes=org_bytes, keep_s=keep_s)


def responses_config(*, keep_s: float, max_bytes: int, replicas: int) -> api.StreamConfig:
    """The bucket's stream, as `responses_bucket` makes it (and the operator's provisioning)."""
    return provisioning.kv_config(
        subjects.KV_RESPONSES, ttl_s=keep_s, max_bytes=max_bytes, replicas=replicas, description=DESCRIPTION
    )


def _warn_full(held: int, max_bytes: int) -> None:
    if held > max_bytes:  # JetStream keeps them, and takes nothing new meanwhile
        log.warning(
            "the KV bucket %s holds %d bytes, more than %s (%d): no response is stored until enough "
            "of them expire (SWITCHYARD_RESPONSES_KEEP_S after they were written)",
            subjects.KV_RESPONSES,
            held,
            SETTING,
            max_bytes,
        )
