"""Keyed digests of content (a prompt, an embedding's inputs, its vectors), one secret key per tenant.

A plain SHA-256 of a prompt in the ledger lets anyone who reads the ledger or its SIEM export confirm a
guess ("is it 'fire Alice'?"), and short prompts are easily guessed. The ledger therefore keeps
`HMAC-SHA256(tenant key, content bytes)`: it still binds the entry to its content, but proves nothing to
whoever lacks the tenant's key. The keys live in `ledger_digest_keys` (32 random bytes, made on a tenant's
first digest; never in a log, an event or the ledger). Erasing an organisation deletes its key
(crypto-shredding): its digests become unconfirmable forever, while every entry, link, root and proof stays
exactly as it was; a row without a key remains, so that no new key is made for it.

The bytes each digest covers are those the SHA-256 of earlier entries covered:

    prompt_hmac_sha256     the prompt's text (its messages' texts joined by "\\n"), UTF-8
    input_hmac_sha256      an embedding's inputs as the JSON list of strings (orjson, no whitespace)
    embedding.hmac_sha256  the 32 raw bytes of the SHA-256 of the vectors' f32le bytes

Entries written before keyed digests keep `prompt_sha256`, `input_sha256` and `embedding.sha256`: the name
says which kind of digest a field holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit.models import DigestKey
from switchyard.common.errors import SwitchyardError, TransientError

ALGORITHM = "hmac-sha256"
KEY_BYTES = 32
CACHE_S = 60.0  # a key erased by another replica stops being used here within this long
MAX_CACHED = 100_000  # tenants (events from other systems may name any): past it the cache starts over

PROMPT = "prompt_hmac_sha256"
INPUT = "input_hmac_sha256"
VECTORS = "hmac_sha256"  # inside `embedding`
LEGACY = {PROMPT: "prompt_sha256", INPUT: "input_sha256", VECTORS: "sha256"}


@dataclass(frozen=True, slots=True)
class TenantKey:
    tenant_id: str
    secret: bytes = field(repr=False)  # never printed: a repr shows the tenant only


class KeyErased(SwitchyardError):
    """The tenant's organisation was erased: its key is gone, and its digests cannot be confirmed."""

    code = "key_erased"


def keyed(key: TenantKey, data: bytes) -> str:
    return hmac.new(key.secret, data, hashlib.sha256).hexdigest()


def prompt_bytes(text_: str) -> bytes:
    return text_.encode("utf-8", "surrogatepass")


def inputs_bytes(inputs: list[str]) -> bytes:
    return orjson.dumps(inputs)


def vectors_bytes(sha256_hex: str) -> bytes:
    return bytes.fromhex(sha256_hex)


class TenantKeys:
    """Reads, makes and erases the tenants' keys. `for_digest` (the ledger writer's path) keeps what it read
    for `CACHE_S`; `for_check` (confirming a digest) reads the database every time, so an erased key is
    never used to confirm one."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._cache: dict[str, tuple[float, TenantKey | None]] = {}
        self._making = asyncio.Lock()

    async def for_digest(self, tenant_id: str) -> TenantKey | None:
        """The tenant's key, made on first use; None once the tenant was erased."""
        cached = self._cache.get(tenant_id)
        if cached is not None and self._clock() - cached[0] < CACHE_S:
            return cached[1]
        key = await self._read_or_make(tenant_id)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[tenant_id] = (self._clock(), key)
        return key

    async def for_check(self, tenant_id: str) -> TenantKey | None:
        """The tenant's key as stored now (None: it never had one); KeyErased once it was erased."""
        found, key = await self._read(tenant_id)
        if found and key is None:
            raise KeyErased(f"tenant {tenant_id}'s digest key was erased with its organisation")
        return key

    async def erase(self, tenant_id: str) -> bool:
        """Deletes the tenant's key and keeps a row without one, so no new key is made. True when a key was
        deleted now (False: none, or erased before). Idempotent."""
        self._cache[tenant_id] = (self._clock(), None)
        for _ in range(3):
            try:
                async with self._sessions() as session, session.begin():
                    if session.get_bind().dialect.name == "sqlite":
                        # the freed bytes are overwritten in the file, not left for a reader of its pages
                        await session.execute(text("PRAGMA secure_delete = ON"))
                    done = await session.execute(
                        update(DigestKey)
                        .where(DigestKey.tenant_id == tenant_id, DigestKey.secret.is_not(None))
                        .values(secret=None, erased_at=datetime.now(UTC))
                    )
                    erased = bool(done.rowcount)  # type: ignore[attr-defined]
                    if not erased:
                        exists = await session.execute(
                            select(DigestKey.tenant_id).where(DigestKey.tenant_id == tenant_id)
                        )
                        if exists.first() is None:
                            await session.execute(insert(DigestKey).values(_row(tenant_id, None)))
            except IntegrityError:  # another replica made a key meanwhile: erase that one
                continue
            if erased:
                await self._forget_old_pages()
            return erased
        raise TransientError(f"could not erase tenant {tenant_id}'s digest key")

    async def _forget_old_pages(self) -> None:
        """SQLite: the write-ahead log still holds the page with the key until it is checkpointed; copy it
        into the database (where secure_delete zeroed the key) and empty the log. Best effort, and brief: a
        pending checkpoint holds back every writer of the (shared) file, so it waits at most a second for
        readers; a reader that held the log longer leaves the frame until later checkpoints overwrite it."""
        async with self._sessions() as session:
            if session.get_bind().dialect.name == "sqlite":
                await session.execute(text("PRAGMA busy_timeout = 1000"))
                try:
                    await session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
                finally:
                    await session.execute(text("PRAGMA busy_timeout = 30000"))  # create_engine's

    async def _read(self, tenant_id: str) -> tuple[bool, TenantKey | None]:
        async with self._sessions() as session:
            row = (
                await session.execute(select(DigestKey.secret).where(DigestKey.tenant_id == tenant_id))
            ).first()
        if row is None:
            return False, None
        return True, None if row[0] is None else TenantKey(tenant_id, bytes(row[0]))

    async def _read_or_make(self, tenant_id: str) -> TenantKey | None:
        found, key = await self._read(tenant_id)
        if found:
            return key
        async with self._making:
            found, key = await self._read(tenant_id)
            if found:
                return key
            secret = secrets.token_bytes(KEY_BYTES)
            try:
                async with self._sessions() as session, session.begin():
                    await session.execute(insert(DigestKey).values(_row(tenant_id, secret)))
            except IntegrityError:  # another replica made it (or erased the tenant) first
                return (await self._read(tenant_id))[1]
            return TenantKey(tenant_id, secret)


def _row(tenant_id: str, secret: bytes | None) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "tenant_id": tenant_id,
        "secret": secret,
        "created_at": now,
        "erased_at": None if secret is not None else now,
    }
