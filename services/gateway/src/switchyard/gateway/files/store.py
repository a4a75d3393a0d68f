"""Files in JetStream: each file's bytes are an object in the object store `switchyard-files`
(`subjects.OBJ_FILES`, stream `OBJ_switchyard-files`), its description (OpenAI's file object) an entry of
the KV bucket `switchyard-files-index` (`subjects.KV_FILES`), both under `<tenant>.<file id>`, where
`<tenant>` is a hash of the organisation's id. A list reads the organisation's descriptions alone (a KV
watch filtered to its keys), never a file's bytes nor another organisation's entries; a file of another
organisation is not found.

A file id is `file-` followed by 24 characters of [0-9A-Za-z]: 8 of its creation time in milliseconds, then
16 random, so ids sort in creation order and a list's `after` cursor works even when that file has since
been deleted.

A put writes the object, then its description (a file is listed only once its bytes are all stored); a
delete removes the description, then the object. A put refused by a full bucket (its limit is
`SWITCHYARD_FILES_BUCKET_BYTES`: the stream discards new messages) raises `FilesFull` and keeps nothing.
A file with an `expires_at` is gone for readers once that time passes; a read or a list that finds it
expired deletes it, and every gateway replica sweeps all expired files every 15 minutes or so. A file an
unfinished batch reads (`in_use`) is kept until that batch ends: its runner reads it again (`held`) while
it runs, though for every other reader (the Files API, a new batch) it is gone at its `expires_at` as any
file; the first read, list or sweep after the batch ended deletes it. The same
sweep deletes what a crash leaves that nobody sees but that still takes room, an hour after it was stored:
an object no description names (a crash between a put's bytes and its description, or between a delete's
description and its bytes) and the chunks of a put cut before its end. Both stores lie outside the
SWITCHYARD stream: audit and billing never receive a file's bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, TYPE_CHECKING, Literal, NamedTuple

import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from switchyard.common import kv, kv_guard, objects, provisioning, subjects
from switchyard.common.background import cancel
from switchyard.gateway.files.errors import (
    FilesFull,
    FileUnreadable,
    description_forged,
    file_not_found,
    file_unreadable,
    organization_erased,
)
from switchyard.gateway.files.models import INTERNAL, FileObject, FilePurpose
from switchyard.gateway.metrics import (
    FILES_ADDED,
    FILES_ADDED_BYTES,
    FILES_REMOVED,
    FILES_REMOVED_BYTES,
    FILES_STORED,
    FILES_STORED_BYTES,
)

if TYPE_CHECKING:
    from switchyard.gateway.access.fence import ErasedFence

log = logging.getLogger(__name__)

BUCKET = subjects.OBJ_FILES
STREAM = f"OBJ_{BUCKET}"  # the object store's stream, as every NATS client names it
DEFAULT_BUCKET_BYTES = 4 * 1024**3
DESCRIPTION = "Switchyard: files of the Files API (batch input and output)"
BUCKET_SETTING = "SWITCHYARD_FILES_BUCKET_BYTES"
INDEX_DESCRIPTION = "Switchyard: the Files API's file descriptions"
SWEEP_S = 900.0  # how often a replica deletes expired files (readers never see them: this frees their bytes)
# An object without a description this long after it was stored is left over from a crash (a put writes
# the description right after the bytes; an upload is spooled first, so its put takes seconds)
ORPHAN_AFTER_S = 3600.0
LIST_WAIT_S = 5.0  # a list whose descriptions do not all arrive within this long fails (bus unavailable)
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order: ids sort by time
_TIME_CHARS = 8  # 62**8 ms: beyond the year 8000
_RANDOM_CHARS = 16
_FILE_ID = re.compile(r"file-[0-9A-Za-z]{24}")
_FILE_KEY = re.compile(r"[0-9a-f]{32}\.file-[0-9A-Za-z]{24}")  # `<tenant part>.<file id>`
_WRONG_LAST = 10071  # JetStream's "wrong last sequence": the key changed (here: was deleted) since read
# The keys (`file_key`) of the files that unfinished batches read: one organisation's, or (None) all's.
InUse = Callable[[str | None], Awaitable[set[str]]]


class Described(NamedTuple):
    """A file's description as the index holds it: its key, the file object, the entry's revision."""

    key: str
    file: FileObject
    revision: int


def new_file_id(now_ms: int | None = None) -> str:
    """`file-` + 8 base-62 digits of the time in ms + 16 random base-62 digits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    digits = []
    for _ in range(_TIME_CHARS):
        ms, digit = divmod(ms, len(_ALPHABET))
        digits.append(_ALPHABET[digit])
    tail = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))
    return f"file-{''.join(reversed(digits))}{tail}"


def is_file_id(value: str) -> bool:
    return _FILE_ID.fullmatch(value) is not None


def tenant_part(tenant_id: str) -> str:
    """The tenant's part of a key: a hash (any id makes a valid key token, and none appears in clear)."""
    return hashlib.sha256(f"files\x00{tenant_id}".encode()).hexdigest()[:32]


def file_key(tenant_id: str, file_id: str) -> str:
    """Where the file's bytes and description are kept: `<tenant part>.<file id>`."""
    return f"{tenant_part(tenant_id)}.{file_id}"


def page(
    files: list[FileObject], *, limit: int, after: str | None, order: Literal["asc", "desc"]
) -> tuple[list[FileObject], bool]:
    """One page of a tenant's files in id (creation) order: those after the cursor `after` (a file id,
    present or not), at most `limit`, and whether more follow."""
    ordered = sorted(files, key=lambda f: f.id, reverse=order == "desc")
    if after is not None:
        ordered = [f for f in ordered if (f.id > after if order == "asc" else f.id < after)]
    return ordered[:limit], len(ordered) > limit


def expired(file: FileObject, now: float) -> bool:
    return file.expires_at is not None and file.expires_at <= now


class FileStore:
    """Every replica's view of the files: the object store for bytes, the KV bucket for descriptions."""

    def __init__(self, js: JetStreamContext, index: KeyValue, *, in_use: InUse | None = None) -> None:
        self._js = js
        self._index = index
        self._sweeper: asyncio.Task[None] | None = None
        self.in_use = in_use  # set once the batches exist: their input files do not expire while they run
        self.fence: ErasedFence | None = None  # a file written as its organisation is erased is removed

    def start(self, every_s: float = SWEEP_S) -> None:
        """Sweeps expired files, and objects left without a description, every `every_s` (give or take
        half, so replicas do not sweep together)."""
        self._sweeper = asyncio.get_running_loop().create_task(self._sweeping(every_s))

    async def stop(self) -> None:
        await cancel(self._sweeper)

    async def sweep(self) -> int:
        """Deletes every organisation's expired files (reading descriptions only; not those unfinished
        batches read); how many. Sets the gauges of the files stored from what it read."""
        live, gone = await self._sorted_out(await _described(self._index, "*"), tenant_id=None)
        removed = [await self._remove(found, "expired") for found in gone]
        for purpose in ("batch", "batch_output", "message_batch"):
            mine = [found.file.bytes for found in live if found.file.purpose == purpose]
            FILES_STORED.labels(purpose).set(len(mine))
            FILES_STORED_BYTES.labels(purpose).set(sum(mine))
        return sum(removed)

    async def _sorted_out(
        self, found: list[Described], *, tenant_id: str | None
    ) -> tuple[list[Described], list[Described]]:
        """`found` (the organisation's descriptions; None: all organisations') as those that stay and those
        expired: past their `expires_at`, and read by no unfinished batch (`in_use`, asked only when a file
        is past it)."""
        now = time.time()
        lapsed = {f.key for f in found if expired(f.file, now)}
        if lapsed and self.in_use is not None:
            lapsed -= await self.in_use(tenant_id)
        return [f for f in found if f.key not in lapsed], [f for f in found if f.key in lapsed]

    async def sweep_orphans(self, *, older_than_s: float = ORPHAN_AFTER_S) -> int:
        """Deletes what a crash left unseen in the object store, once it is older than `older_than_s`: a
        file's object that no description names (its meta stored that long ago), and the chunks of a put
        cut before its end (no meta names them; the last stored that long ago); how many. Chunks are
        listed first, then objects, then descriptions, so what a put completes meanwhile counts as owned
        and described. An upload in progress has no meta yet and keeps adding chunks, and one just stored
        is described at once: neither is that old (nats-py's `mtime` is when a put began: not used)."""
        chunked = await self._chunk_subjects()
        stored = await self._stored()
        described = {found.key for found in await _described(self._index, "*")}
        now, removed = time.time(), 0
        for name in sorted(set(stored) - described):
            if _FILE_KEY.fullmatch(name) is None or await self._has_description(name):
                continue  # not a file's object (not ours to delete), or described after all
            if await self._older(_meta_subject(name), now, older_than_s):
                await self._forget_object(name)
                removed += 1
        for subject in sorted(chunked - {_chunk_subject(nuid) for nuid in stored.values()}):
            if await self._older(subject, now, older_than_s):
                await self._js.purge_stream(STREAM, subject=subject)
                removed += 1
        return removed

    async def _has_description(self, key: str) -> bool:
        """Asked once more of the one key before its object goes: a file's bytes are never deleted on the
        word of a list alone."""
        try:
            return bool((await kv_guard.read(self._index, key))[0])
        except kv_guard.ForgedEntry:  # its real description overwritten: its bytes are not ours to drop
            return True

    async def _chunk_subjects(self) -> set[str]:
        """The subjects that hold chunks, each of one put."""
        state = (await self._js.stream_info(STREAM, subjects_filter=_chunk_subject("*"))).state
        return set(state.subjects or ())

    async def _stored(self) -> dict[str, str]:
        """The objects in the store (not those deleted, nor those whose meta is forged: their file reads as
        unreadable until deleted): each one's chunks' id (nuid) by its name."""
        return {info.name: info.nuid or "" for info in await objects.listed(self._js, BUCKET)}

    async def _older(self, subject: str, now: float, age_s: float) -> bool:
        """The subject's last message was stored more than `age_s` before `now` (False once it is gone)."""
        try:
            found = await self._js.get_last_msg(STREAM, subject)
        except NotFoundError:
            return False
        return found.time is not None and now - found.time.timestamp() > age_s

    async def usage(self, *, tenant_id: str) -> tuple[int, int]:
        """How many files the organisation has (those not expired: `_sorted_out`), and their bytes, from
        their descriptions."""
        found = await _described(self._index, tenant_part(tenant_id))
        live, _ = await self._sorted_out(found, tenant_id=tenant_id)
        return len(live), sum(f.file.bytes for f in live)

    async def _sweeping(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s * random.uniform(0.5, 1.5))
            try:
                if removed := await self.sweep():
                    log.info("files: %d expired files deleted", removed)
                if orphans := await self.sweep_orphans():
                    log.info("files: %d objects without a description, or cut puts, deleted", orphans)
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("files: the sweep of expired files failed, tried again later: %r", exc)

    async def put(
        self,
        *,
        tenant_id: str,
        purpose: FilePurpose,
        filename: str,
        data: bytes | IO[bytes] | AsyncIterator[bytes],
        expires_at: int | None = None,
        expires_after_s: int | None = None,
        before_described: Callable[[], Awaitable[None]] | None = None,
        file_id: str | None = None,
    ) -> FileObject:
        """Stores a new file (`data`: its bytes, a binary file read from where it stands, or its bytes as
        they come, each in chunks), expiring at `expires_at` or `expires_after_s` after its `created_at` (as
        OpenAI's `expires_after` counts: from the file object's own time, however long the bytes took to
        store). FilesFull when the bucket has no room left for it. `before_described`: awaited once the
        bytes are stored, before the file is described; should it raise, nothing is kept. Should `data`
        raise (or the put be cancelled), nothing is kept either. A bucket full while `data` comes: the
        rest of `data` is read (what it raises at its end comes first), then `before_described`, then
        FilesFull. `file_id`: the id it takes (`new_file_id`), replacing a file of that id (a batch's
        results written again)."""
        file_id = file_id or new_file_id()
        key = file_key(tenant_id, file_id)
        try:
            if isinstance(data, AsyncIterator):
                info = await objects.write(self._js, BUCKET, key, data)
            else:
                info = await objects.put(self._js, BUCKET, key, data)
        except nats.js.errors.APIError as exc:  # the chunks sent were purged
            if _full(exc):
                if isinstance(data, AsyncIterator):
                    async for _ in data:  # a body refused for its own fault is refused so
                        pass
                if before_described is not None:
                    await before_described()
                raise FilesFull(
                    "the file store is full (SWITCHYARD_FILES_BUCKET_BYTES): delete files you no longer "
                    "need, or ask the operator to raise the limit"
                ) from exc
            raise
        if before_described is not None:
            try:
                await before_described()
            except BaseException:
                await self._discard(key, info)
                raise
        created_at = int(time.time())
        if expires_after_s is not None:
            expires_at = created_at + expires_after_s
        file = FileObject(
            id=file_id,
            bytes=info.size or 0,
            created_at=created_at,
            filename=filename,
            purpose=purpose,
            expires_at=expires_at,
        )
        try:
            revision = await self._index.put(key, file.model_dump_json().encode())
        except BaseException:
            await self._forget_object(key)
            raise
        if self.fence is not None and await self.fence.undone(tenant_id, f"the file {file_id}"):
            await self._remove(Described(key, file, revision), "deleted")
            raise organization_erased(tenant_id)
        FILES_ADDED.labels(purpose).inc()
        FILES_ADDED_BYTES.labels(purpose).inc(file.bytes)
        return file

    async def get(self, *, tenant_id: str, file_id: str, held: bool = False) -> FileObject:
        """The file's description: NotFound (`file_not_found`) if it is absent, expired or another
        tenant's. `held`: read by the batch whose input it is, which reads it past its `expires_at` until
        the batch ends (`_sorted_out`); for everyone else an expired file is gone."""
        return (await self._read(tenant_id, file_id, held=held)).file

    async def _read(self, tenant_id: str, file_id: str, *, held: bool = False) -> Described:
        key = self._key(tenant_id, file_id)
        try:
            value, revision = await kv_guard.read(self._index, key)
        except kv_guard.ForgedEntry:
            raise description_forged(file_id) from None
        if not value:
            raise file_not_found(file_id)
        found = Described(key, FileObject.model_validate_json(value), revision or 0)
        _, gone = await self._sorted_out([found], tenant_id=tenant_id)
        if gone:
            await self._remove(found, "expired")
            raise file_not_found(file_id)
        if not held and expired(found.file, time.time()):  # kept for its batch alone
            raise file_not_found(file_id)
        if not held and found.file.purpose in INTERNAL:  # its message batch's alone
            raise file_not_found(file_id)
        return found

    async def open(
        self, *, tenant_id: str, file_id: str, held: bool = False
    ) -> tuple[FileObject, AsyncIterator[bytes]]:
        """The file's description and its bytes as they come from the store, in chunks (128 KiB), checked
        against the stored size and SHA-256 at the end (FileUnreadable then, or when the file vanishes
        while read). NotFound as `get` (`held` as there), raised before any chunk. FileUnreadable too when
        the server rewrote the object's meta (before any chunk) or a chunk (before its bytes) on a client's
        behalf (objects.py): never the forger's bytes."""
        file = await self.get(tenant_id=tenant_id, file_id=file_id, held=held)
        try:
            info = await objects.describe(self._js, BUCKET, self._key(tenant_id, file_id))
        except objects.ObjectGone:  # deleted between the two reads
            raise file_not_found(file_id) from None
        except objects.ObjectUnreadable as exc:
            raise file_unreadable(file_id, exc) from None
        return file, _checked(objects.chunks(self._js, BUCKET, info), file_id)

    async def content(self, *, tenant_id: str, file_id: str) -> bytes:
        """The file's bytes, checked. NotFound as `get`."""
        _, chunks = await self.open(tenant_id=tenant_id, file_id=file_id)
        return b"".join([chunk async for chunk in chunks])

    async def delete(self, *, tenant_id: str, file_id: str, held: bool = False) -> bool:
        """Deletes the file (its description first: it is gone for every reader at once). NotFound as
        `get`."""
        await self._remove(await self._read(tenant_id, file_id, held=held), "deleted")
        return True

    async def list(
        self,
        *,
        tenant_id: str,
        purpose: str | None,
        limit: int,
        after: str | None,
        order: Literal["asc", "desc"],
    ) -> tuple[list[FileObject], bool]:
        """One page of the tenant's files (of `purpose`, when given) and whether more follow."""
        found = await _described(self._index, tenant_part(tenant_id))
        live, gone = await self._sorted_out(found, tenant_id=tenant_id)
        for lapsed in gone:
            await self._remove(lapsed, "expired")
        now = time.time()  # an expired file a batch still reads is kept for it alone: not listed
        files = [
            f.file
            for f in live
            if (purpose is None or f.file.purpose == purpose)
            and not expired(f.file, now)
            and f.file.purpose not in INTERNAL
        ]
        return page(files, limit=limit, after=after, order=order)

    async def erase_tenant(self, tenant_id: str) -> tuple[int, int]:
        """Deletes every file of the tenant (an erasure): its own, batch inputs and outputs, message
        batches' internal ones, expired ones a batch still held; how many and their bytes. Deleted as a
        delete does (description, then bytes), so a run cut short leaves only what a rerun deletes."""
        removed, size = 0, 0
        for found in await _described(self._index, tenant_part(tenant_id)):
            if await self._remove(found, "deleted"):
                removed, size = removed + 1, size + found.file.bytes
        return removed, size

    def _key(self, tenant_id: str, file_id: str) -> str:
        if not is_file_id(file_id):  # not one of ours: must not reach a key
            raise file_not_found(file_id)
        return file_key(tenant_id, file_id)

    async def _remove(self, found: Described, reason: Literal["deleted", "expired"]) -> bool:
        """Removes the file as it was read; False when another reader (or replica) removed it first (it
        removes the bytes, and counts the file)."""
        try:
            await self._index.delete(found.key, last=found.revision)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != _WRONG_LAST:
                raise
            return False
        await self._forget_object(found.key)
        FILES_REMOVED.labels(reason).inc()
        FILES_REMOVED_BYTES.labels(reason).inc(found.file.bytes)
        return True

    async def _discard(self, key: str, info: api.ObjectInfo) -> None:
        """Removes an object no one has seen (no description names it) without a trace: a delete would
        leave its marker in the stream for good. One that stays (the bus failed) is a sweep's orphan."""
        try:
            await self._js.purge_stream(STREAM, subject=_chunk_subject(info.nuid or ""))
            await self._js.purge_stream(STREAM, subject=_meta_subject(key))
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("the object %s stays in %s, refused before it was described: %r", key, BUCKET, exc)

    async def _forget_object(self, key: str) -> None:
        """Deletes an object whose description is gone; one that stays (the bus failed) is unlisted, only
        its bytes still count against the bucket."""
        try:
            await objects.delete(self._js, BUCKET, key)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("the object %s stays in %s after its file was removed: %r", key, BUCKET, exc)


async def _checked(chunks: AsyncIterator[bytes], file_id: str) -> AsyncIterator[bytes]:
    """The chunks (checked against their meta's size and digest by `objects.chunks`), its errors in the
    API's words."""
    try:
        async for chunk in chunks:
            yield chunk
    except objects.ObjectGone as exc:
        raise FileUnreadable(f"the file vanished while read: {exc}") from None
    except objects.ObjectUnreadable as exc:
        raise file_unreadable(file_id, exc) from None


async def _described(index: KeyValue, tenant: str) -> list[Described]:
    """Every description under the tenant's keys, read through a KV watch (its current values, no history,
    no deleted keys; a forged one skipped, kv_guard)."""
    watcher = await kv_guard.watch(index, f"{tenant}.*", idle_s=LIST_WAIT_S)
    found: list[Described] = []
    try:
        while (entry := await watcher.updates(timeout=LIST_WAIT_S)) is not None:  # type: ignore[no-untyped-call]
            if entry.value:
                file = FileObject.model_validate_json(entry.value)
                found.append(Described(entry.key, file, entry.revision or 0))
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await watcher.stop()  # type: ignore[no-untyped-call]
    return found


def _meta_subject(name: str) -> str:
    return f"$O.{BUCKET}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def _chunk_subject(nuid: str) -> str:
    return f"$O.{BUCKET}.C.{nuid}"


def _full(exc: nats.js.errors.APIError) -> bool:
    # JetStream's "maximum bytes exceeded" (err_code 10047), also as nats-server words other limits.
    return exc.err_code == 10047 or "maximum bytes" in (exc.description or "").lower()


async def files_bucket(
    js: JetStreamContext, *, max_bytes: int = DEFAULT_BUCKET_BYTES, replicas: int = 1
) -> FileStore:
    """Creates the object store and the index, or brings existing ones to this configuration (safe from
    every gateway on every start): file storage, no expiry, at most `max_bytes` of files in all, a put into
    a full bucket refused (discard new). Returns the store over them."""
    await objects.open_bucket(
        js,
        BUCKET,
        description=DESCRIPTION,
        max_bytes=max_bytes,
        replicas=replicas,
        setting=BUCKET_SETTING,
    )
    index = await kv.bucket(js, subjects.KV_FILES, replicas=replicas, description=INDEX_DESCRIPTION)
    return FileStore(js, index)


def index_config(*, replicas: int) -> api.StreamConfig:
    """The index's stream, as `files_bucket` makes it (and the operator's provisioning)."""
    return provisioning.kv_config(subjects.KV_FILES, replicas=replicas, description=INDEX_DESCRIPTION)


def bucket_config(*, max_bytes: int, replicas: int) -> api.StreamConfig:
    """The object store's stream, as `files_bucket` makes it (and the operator's provisioning)."""
    return provisioning.object_config(BUCKET, description=DESCRIPTION, max_bytes=max_bytes, replicas=replicas)
