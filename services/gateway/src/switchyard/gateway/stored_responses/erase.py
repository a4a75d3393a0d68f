"""Erasing an organisation's stored responses and conversations (an erasure request, GDPR Art. 17; an
organisation that leaves).

Its records of the current layout are the keys under its prefix (`store.record_key`): listed by the
prefix and purged one by one (a purge by subject leaves no delete marker behind, so nothing of the record
stays in the stream). Those of the earlier layout (a hash of organisation and id alone, written before the
upgrade, until they expire) cannot be listed by organisation: every such key of the bucket is read and the
record is the organisation's only if its own id, hashed with the organisation, gives back its key. So
nothing of another organisation is ever purged: a key is either under the organisation's prefix or proven
to be its hash.

Idempotent and resumable: what a run purged is gone, and a run again (after an interruption, or to be
sure) purges what is left and counts only that. Records written while it runs (a key not yet revoked)
are purged if they are listed before it ends, and by their writer otherwise (`ResponseStore.fenced`).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from switchyard.common import kv
from switchyard.gateway.stored_responses.store import OFF_LOOP_BYTES, USAGE, ResponseStore, org_prefix

log = logging.getLogger(__name__)

_CONVERSATION = b'{"id":'  # a conversation record's JSON starts so; a response's with {"response":


@dataclass
class Erased:
    """What an erasure purged: records that still held a response or a conversation, and keys that held
    nothing readable any more (deleted records' markers, the usage record)."""

    responses: int = 0
    conversations: int = 0
    other_keys: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "stored_responses": self.responses,
            "conversations": self.conversations,
            "other_keys": self.other_keys,
        }


async def erase_organisation(store: ResponseStore, tenant_id: str) -> Erased:
    """Purges every record of `tenant_id` from the bucket, of either layout, and its usage record."""
    erased = Erased()
    prefix = f"{org_prefix(tenant_id)}."
    while True:  # a listing holds at most the server's page of subjects: list again until none is left
        listed = await kv.keys(store.bucket, prefix)
        if not listed:
            break
        for key in listed:
            raw, _ = await kv.read(store.bucket, key)
            _count(erased, raw)
            await kv.purge_matching(store.bucket, key)
    old_keys = [key async for page in _subjects(store, "*") for key in page]
    usage = kv.tenant_key(tenant_id, USAGE)
    for key in old_keys:
        if key == usage:
            erased.other_keys += 1
            await kv.purge_matching(store.bucket, key)
            continue
        raw, _ = await kv.read(store.bucket, key)
        record_id = await _record_id(raw) if raw else None
        if record_id is not None and kv.tenant_key(tenant_id, record_id) == key:
            _count(erased, raw)
            await kv.purge_matching(store.bucket, key)
    log.info("erased the stored records of an organisation: %s", erased.as_dict())
    return erased


def _count(erased: Erased, raw: bytes | None) -> None:
    if not raw:
        erased.other_keys += 1
        return
    try:
        head = zlib.decompressobj().decompress(raw, len(_CONVERSATION))
    except zlib.error:
        head = b""
    if head == _CONVERSATION:
        erased.conversations += 1
    elif head:
        erased.responses += 1
    else:
        erased.other_keys += 1


async def _record_id(raw: bytes) -> str | None:
    """The id of the response or conversation a record of the earlier layout holds; None for anything
    else (another organisation's usage record: JSON, not compressed)."""

    def read() -> str | None:
        try:
            data = orjson.loads(zlib.decompress(raw))
            found = data["response"]["id"] if "response" in data else data["id"]
        except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError):
            return None
        return found if isinstance(found, str) else None

    if len(raw) <= OFF_LOOP_BYTES:
        return read()
    return await asyncio.to_thread(read)


async def _subjects(store: ResponseStore, pattern: str) -> AsyncIterator[list[str]]:
    """The bucket's keys matching `pattern` (`*`: the keys of one token, the earlier layout's), page by
    page of the server's stream info (it answers at most 100,000 subjects at a time)."""
    bucket = store.bucket
    js = bucket._js
    offset = 0
    while True:
        reply = await js._api_request(
            f"{js._prefix}.STREAM.INFO.{bucket._stream}",
            orjson.dumps({"subjects_filter": f"{bucket._pre}{pattern}", "offset": offset}),
            timeout=js._timeout,
        )
        page = [subject[len(bucket._pre) :] for subject in (reply.get("state") or {}).get("subjects") or {}]
        if not page:
            return
        yield page
        offset += len(page)
        if offset >= int(reply.get("total") or 0):
            return
