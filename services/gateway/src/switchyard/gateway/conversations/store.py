"""Conversations in the stored responses' KV bucket (`switchyard-responses`), shared by every replica.

A record is one conversation whole: its id, creation time, metadata and items in order, zlib-compressed
JSON under the organisation's hash and a hash of the organisation and its id (`record_key`, as a stored
response's: another organisation's conversation is not found, neither appears in clear, and an erasure
finds them all by the prefix); one written before that layout is read, changed and deleted where it is.
Every change is a compare-and-set on that one record (written only at the revision it was read at, else read
and made again), so two responses appending at once, on one replica or two, each add their items: none is
lost and none is added twice. Not `kv.update`: that keeps each key's last write in the process (gigabytes of
records of up to a bus message) and edits on the event loop (a large record takes tenths of a second to
compress); here a large record is compressed and read in a thread, as a stored response is.

One record per conversation bounds a conversation by a bus message, compressed; a conversation whose
items were larger could not be answered anyway (its items are the prepended input of a task on the bus).
Retention is the bucket's: a conversation expires SWITCHYARD_RESPONSES_KEEP_S after its last change
(OpenAI keeps conversations without a time limit); what it adds counts against its organisation's share
of the bucket (SWITCHYARD_RESPONSES_ORG_BYTES) as a stored response's does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import orjson
from nats.errors import Error as BusError
from nats.js.errors import KeyWrongLastSequenceError

from switchyard.common import kv
from switchyard.common.errors import TransientError
from switchyard.gateway.errors import Conflict, InvalidRequest, NotFound, RequestTooLarge, ServiceUnavailable
from switchyard.gateway.stored_responses.store import OFF_LOOP_BYTES, ResponseStore, record_key

log = logging.getLogger(__name__)

CONVERSATION_ID = "conv_"
_LEVEL = 1


class ConversationNotFound(NotFound):
    code = "conversation_not_found"


class ConversationTooLarge(RequestTooLarge):
    code = "conversation_too_large"


class OverShare(InvalidRequest):
    code = "conversation_storage_exceeded"
    retry = False


def not_found(conversation_id: str, *, param: str = "conversation_id") -> ConversationNotFound:
    return ConversationNotFound(f"Conversation with id '{conversation_id[:80]}' not found.", param=param)


def new_id() -> str:
    return CONVERSATION_ID + uuid.uuid4().hex


@dataclass(frozen=True)
class StoredConversation:
    id: str
    created_at: int = field(default_factory=lambda: int(time.time()))
    metadata: dict[str, str] = field(default_factory=dict)
    items: tuple[dict[str, Any], ...] = ()

    def public(self) -> dict[str, Any]:
        """The Conversation object."""
        return {
            "id": self.id,
            "object": "conversation",
            "created_at": self.created_at,
            "metadata": self.metadata,
        }

    def item(self, item_id: str) -> dict[str, Any] | None:
        return self._by_id.get(item_id)

    @cached_property
    def _by_id(self) -> dict[Any, dict[str, Any]]:
        return {item.get("id"): item for item in self.items}

    def with_items(self, added: list[dict[str, Any]]) -> StoredConversation:
        """This conversation and `added` after its items, but for those it holds already (by id: an append
        retried after a conflict adds nothing twice)."""
        new = [item for item in added if item.get("id") not in self._by_id]
        return replace(self, items=(*self.items, *new)) if new else self

    def to_bytes(self) -> bytes:
        return zlib.compress(self._json(), _LEVEL)

    async def encoded(self) -> bytes:
        """`to_bytes`, in a thread when large (as a stored response: a conversation of images takes
        tenths of a second, which every request of the replica would wait on the event loop)."""
        data = self._json()
        if len(data) <= OFF_LOOP_BYTES:
            return zlib.compress(data, _LEVEL)
        return await asyncio.to_thread(zlib.compress, data, _LEVEL)

    def _json(self) -> bytes:
        data = {"id": self.id, "created_at": self.created_at, "metadata": self.metadata, "items": self.items}
        return orjson.dumps(data)

    @classmethod
    def from_bytes(cls, raw: bytes) -> StoredConversation:
        data = orjson.loads(zlib.decompress(raw))
        return cls(data["id"], data["created_at"], data["metadata"], tuple(data["items"]))

    @classmethod
    async def decoded(cls, raw: bytes) -> StoredConversation:
        if len(raw) <= OFF_LOOP_BYTES:
            return cls.from_bytes(raw)
        return await asyncio.to_thread(cls.from_bytes, raw)


Edit = Callable[[StoredConversation], StoredConversation]


class ConversationStore:
    """Conversations kept in `responses`' bucket, with its limits (`max_value_bytes`, the organisation's
    share)."""

    def __init__(self, responses: ResponseStore) -> None:
        self.responses = responses

    async def create(self, tenant_id: str, conversation: StoredConversation) -> None:
        raw = await conversation.encoded()
        self._check_size(raw)
        await self._count(tenant_id, len(raw))
        key = record_key(tenant_id, conversation.id)
        try:
            await self.responses.bucket.create(key, raw)
            fenced = await self.responses.fenced(tenant_id, key, f"the conversation {conversation.id}")
        except (BusError, TimeoutError) as exc:
            raise _unavailable(exc) from exc
        if fenced:
            raise _erased(tenant_id)

    async def get(self, tenant_id: str, conversation_id: str) -> StoredConversation | None:
        return (await self._read(tenant_id, conversation_id))[1]

    async def change(
        self, tenant_id: str, conversation_id: str, edit: Edit, *, adding: list[dict[str, Any]] | None = None
    ) -> StoredConversation | None:
        """The conversation as `edit` left it, None when there is none: a compare-and-set, written only if
        nobody wrote it in between, else `edit` runs again on what they wrote. `adding`: the items it adds,
        counted against the organisation's share first. APIErrors `edit` raises reach the caller."""
        if adding:
            await self._count(tenant_id, await _compressed_size(adding))
        try:
            for attempt in range(kv.CAS_ATTEMPTS):
                key, old, revision = await self._read(tenant_id, conversation_id)
                if old is None or revision is None:
                    return None
                new = edit(old)
                if new is old:
                    return old
                raw = await new.encoded()
                self._check_size(raw)
                try:
                    await self.responses.bucket.update(key, raw, last=revision)
                except KeyWrongLastSequenceError:
                    await asyncio.sleep(random.random() * 0.002 * (attempt + 1))
                    continue
                if await self.responses.fenced(tenant_id, key, f"the conversation {conversation_id}"):
                    raise _erased(tenant_id)
                return new
        except (BusError, TimeoutError) as exc:
            raise _unavailable(exc) from exc
        raise _unavailable(
            TransientError(f"{kv.CAS_ATTEMPTS} writers of conversation {conversation_id} at once")
        )

    async def delete(self, tenant_id: str, conversation_id: str) -> bool:
        """True when the conversation was there (and is gone now). Its responses stay, as OpenAI's do."""
        key, found, _ = await self._read(tenant_id, conversation_id)
        if found is None:
            return False
        await self.responses.bucket.delete(key)
        return True

    async def _read(
        self, tenant_id: str, conversation_id: str
    ) -> tuple[str, StoredConversation | None, int | None]:
        """The conversation's key (the layout it was written in), the conversation and its revision (what a
        change must find unchanged to write), or Nones."""
        key = record_key(tenant_id, conversation_id)
        if not conversation_id.startswith(CONVERSATION_ID):
            return key, None, None
        key, raw, revision = await self.responses.locate(tenant_id, conversation_id)
        if not raw:
            return key, None, None
        try:
            return key, await StoredConversation.decoded(raw), revision
        except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError):
            log.error("stored conversation %s cannot be read: left out", conversation_id)
            return key, None, None

    def _check_size(self, raw: bytes) -> None:
        if len(raw) > self.responses.max_value_bytes:
            raise ConversationTooLarge(
                f"the conversation would be {len(raw)} bytes compressed, over the "
                f"{self.responses.max_value_bytes} a conversation may hold (one bus message: its items are "
                "the input of a task)",
                param="items",
            )

    async def _count(self, tenant_id: str, size: int) -> None:
        try:
            counted = await self.responses.count(tenant_id, size)
        except (BusError, TimeoutError, TransientError) as exc:
            raise _unavailable(exc) from exc
        if not counted:
            raise OverShare(
                "the organisation holds its share of the stored responses and conversations "
                "(SWITCHYARD_RESPONSES_ORG_BYTES): delete some, or wait until they expire",
                param="items",
            )


async def _compressed_size(items: list[dict[str, Any]]) -> int:
    """What `items` take compressed, as they count against the organisation's share: compressed in a thread
    when large, as a record is (a turn's images are MB)."""
    data = orjson.dumps(items)
    if len(data) <= OFF_LOOP_BYTES:
        return len(zlib.compress(data, _LEVEL))
    return len(await asyncio.to_thread(zlib.compress, data, _LEVEL))


def _unavailable(exc: BaseException) -> ServiceUnavailable:
    log.warning("conversation not stored: %s", exc)
    return ServiceUnavailable("the conversation could not be stored just now; try again", retry=True)


def _erased(tenant_id: str) -> Conflict:
    """A conversation written as its organisation was erased: purged, not kept (access/fence.py)."""
    return Conflict(
        f"the organisation {tenant_id} was erased: the conversation is not kept",
        code="organization_erased",
        retry=False,
    )
