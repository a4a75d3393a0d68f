"""Signed checkpoints of the ledger's Merkle tree: made every N entries or T seconds, stored append-only."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit import tree
from switchyard.audit.chain import timestamp
from switchyard.audit.models import Checkpoint, LedgerEntry
from switchyard.audit.note import CheckpointBody, VerifierKey, signed_note, verifier_key
from switchyard.audit.service import node_hashes, utc
from switchyard.audit.signing import Signer
from switchyard.common.background import cancel

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
CHECKPOINT_FORMAT = "switchyard.ledger.checkpoint.v1"


def _now() -> datetime:
    return datetime.now(UTC)


async def make_checkpoint(
    sessions: async_sessionmaker[AsyncSession], *, signer: Signer, clock: Clock = _now
) -> Checkpoint | None:
    """Signs the tree of every entry now in the ledger; None when the last checkpoint already covers it."""
    async with sessions() as session, session.begin():
        size = (await session.execute(select(func.coalesce(func.max(LedgerEntry.seq), 0)))).scalar_one()
        last = await _latest_size(session)
        if size <= last:
            return None
        root = tree.root_of(size, await node_hashes(session, set(tree.frontier(size))))
        body = CheckpointBody(signer.key.name, size, root, utc(clock()))
        signature = signer.sign(body.text().encode("utf-8"))
        row = Checkpoint(
            tree_size=size,
            root_hash=root.hex(),
            created_at=body.time,
            origin=body.origin,
            key_id=signer.key.key_id.hex(),
            public_key=signer.key.public_key.hex(),
            signature=base64.b64encode(signature).decode("ascii"),
            note=signed_note(body, signer.key, signature),
        )
        session.add(row)
    return row


async def _latest_size(session: AsyncSession) -> int:
    query = select(func.coalesce(func.max(Checkpoint.tree_size), 0))
    return int((await session.execute(query)).scalar_one())


async def latest(sessions: async_sessionmaker[AsyncSession]) -> Checkpoint | None:
    async with sessions() as session:
        query = select(Checkpoint).order_by(Checkpoint.tree_size.desc()).limit(1)
        return (await session.execute(query)).scalar_one_or_none()


async def at_size(sessions: async_sessionmaker[AsyncSession], size: int) -> Checkpoint | None:
    async with sessions() as session:
        return await session.get(Checkpoint, size)


def stored_key(row: Checkpoint) -> VerifierKey:
    return verifier_key(row.origin, bytes.fromhex(row.public_key))


def document(row: Checkpoint) -> dict[str, Any]:
    """The checkpoint as JSON an outsider can check with any Ed25519 library (see `note.py`)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "origin": row.origin,
        "tree_size": row.tree_size,
        "root_hash": row.root_hash,
        "time": timestamp(row.created_at),
        "verifier_key": stored_key(row).text(),
        "note": row.note,
    }


class Checkpointer:
    """Makes a checkpoint after `every` new entries or every `interval_s` seconds (if the ledger grew)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        signer: Signer,
        every: int,
        interval_s: float,
    ) -> None:
        self._sessions = sessions
        self._signer = signer
        self._every = every
        self._interval_s = interval_s
        self._grown = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def appended(self, count: int) -> None:
        self._grown += count
        if self._grown >= self._every:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ledger-checkpointer")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:  # the first round catches up on entries appended before a crash
            self._wake.clear()
            self._grown = 0
            try:
                made = await make_checkpoint(self._sessions, signer=self._signer)
                if made is not None:
                    log.info("checkpoint %d signed (root %s)", made.tree_size, made.root_hash)
            except DBAPIError as exc:  # another replica signed first, or the database is away: next round
                log.info("no checkpoint this round: %s", exc.orig)
            except Exception:
                log.exception("making a checkpoint failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._wake.wait()
