"""Inclusion (entry -> checkpoint) and consistency (checkpoint -> checkpoint) proofs, as JSON documents.

Proofs are always against signed checkpoints, so an outsider needs nothing from us but the verifier key:

    {"format": "switchyard.ledger.inclusion.v1", "seq": 5, "leaf_index": 4, "tenant_id": "acme",
     "entry": "<base64 entry bytes>", "leaf_hash": "<hex>", "tree_size": 10, "proof": ["<hex>", ...],
     "checkpoint": {<checkpoint document, see checkpoints.document>}}

    {"format": "switchyard.ledger.consistency.v1", "first": {<checkpoint>}, "second": {<checkpoint>},
     "proof": ["<hex>", ...]}

leaf_hash = SHA-256(0x00 || entry bytes); the proof is RFC 6962 PATH / PROOF, checked with RFC 9162
2.1.3.2 / 2.1.4.2 against the root in the signed note. `proof_check.py` does exactly that, offline.

A proof is a few indexed reads (the entry, a checkpoint, the perfect-subtree hashes its path folds), done
as plain synchronous SQL: `ProofServer` runs them on a worker thread with a synchronous SQLite engine
(the async driver's thread hops cost more than the reads), or on the async engine for PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, create_engine, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from switchyard.audit import checkpoints, tree
from switchyard.audit.chain import EntryFields, entry_bytes, leaf_hash
from switchyard.audit.models import Checkpoint, LedgerEntry
from switchyard.audit.service import read_nodes
from switchyard.common.db import is_sqlite
from switchyard.common.errors import SwitchyardError

INCLUSION_FORMAT = "switchyard.ledger.inclusion.v1"
CONSISTENCY_FORMAT = "switchyard.ledger.consistency.v1"
T = TypeVar("T")


class NotFound(SwitchyardError):
    code = "not_found"


class Forbidden(SwitchyardError):
    code = "forbidden"


class BadRange(SwitchyardError):
    """Both checkpoints exist but the first is the newer: a wrong request, not a missing checkpoint."""

    code = "invalid_request"


class ProofUnavailable(SwitchyardError):
    """The entry or size is not covered by a checkpoint yet (one follows within the checkpoint interval)."""

    code = "proof_unavailable"
    retryable = True


class NodeCache:
    """Perfect-subtree hashes never change once written, so any of them may be kept (LRU, bounded)."""

    def __init__(self, capacity: int = 500_000) -> None:
        self._capacity = capacity
        self._hashes: OrderedDict[tree.Node, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conn: Connection, nodes: set[tree.Node]) -> dict[tree.Node, bytes]:
        with self._lock:
            found = {n: self._hashes[n] for n in nodes if n in self._hashes}
        missing = nodes - found.keys()
        if missing:
            loaded = read_nodes(conn, missing)
            found.update(loaded)
            with self._lock:
                self._hashes.update(loaded)
                while len(self._hashes) > self._capacity:
                    self._hashes.popitem(last=False)
        return found


def _nodes(conn: Connection, nodes: set[tree.Node], cache: NodeCache | None) -> dict[tree.Node, bytes]:
    if cache is not None:
        return cache.get(conn, nodes)
    return read_nodes(conn, nodes) if nodes else {}


_CP = Checkpoint.__table__
_ENTRY = LedgerEntry.__table__
# Built once, so SQLAlchemy compiles each once: a proof is three indexed reads and no query building.
CHECKPOINT_AT = select(_CP).where(_CP.c.tree_size == bindparam("size"))
LATEST_CHECKPOINT = select(_CP).order_by(_CP.c.tree_size.desc()).limit(1)
ENTRY_AT = select(*(_ENTRY.c[n] for n in EntryFields.__slots__)).where(_ENTRY.c.seq == bindparam("seq"))


def _checkpoint(conn: Connection, size: int | None, *, covering: int = 1) -> Any:
    if size is not None:
        row = conn.execute(CHECKPOINT_AT, {"size": size}).first()
        if row is None:
            raise NotFound(f"no checkpoint of size {size}")
    else:
        row = conn.execute(LATEST_CHECKPOINT).first()
        if row is None:
            raise ProofUnavailable("the ledger has no checkpoint yet")
    if row.tree_size < covering:
        raise ProofUnavailable(
            f"entry {covering} is not covered by checkpoint {row.tree_size} yet; the next checkpoint will"
        )
    return row


def inclusion_sync(
    conn: Connection,
    *,
    seq: int,
    tree_size: int | None = None,
    tenant_id: str | None = None,
    cache: NodeCache | None = None,
) -> dict[str, Any]:
    """Proves entry `seq` is in checkpoint `tree_size` (default: the latest). `tenant_id` scopes it."""
    if seq < 1:
        raise NotFound(f"no entry {seq}: entries start at 1")
    row = conn.execute(ENTRY_AT, {"seq": seq}).first()
    if row is None:
        raise NotFound(f"no entry {seq}")
    fields = EntryFields(*row)
    if tenant_id is not None and fields.tenant_id != tenant_id:
        raise Forbidden(f"entry {seq} belongs to another tenant")
    checkpoint = _checkpoint(conn, tree_size, covering=seq)
    plan = tree.inclusion_plan(seq - 1, checkpoint.tree_size)
    proof = tree.assemble(plan, _nodes(conn, tree.needed(plan), cache))
    data = entry_bytes(fields)
    return {
        "format": INCLUSION_FORMAT,
        "seq": seq,
        "leaf_index": seq - 1,
        "tenant_id": fields.tenant_id,
        "entry": base64.b64encode(data).decode("ascii"),
        "leaf_hash": leaf_hash(data).hex(),
        "tree_size": checkpoint.tree_size,
        "proof": [h.hex() for h in proof],
        "checkpoint": checkpoints.document(checkpoint),
    }


def consistency_sync(
    conn: Connection, *, first: int, second: int | None = None, cache: NodeCache | None = None
) -> dict[str, Any]:
    """Proves checkpoint `first` is a prefix of checkpoint `second` (default: the latest)."""
    one = _checkpoint(conn, first)
    two = _checkpoint(conn, second)
    if two.tree_size < one.tree_size:
        raise BadRange(
            f"checkpoint {two.tree_size} is older than checkpoint {one.tree_size}: "
            "`from` must not be after `to`"
        )
    plan = tree.consistency_plan(one.tree_size, two.tree_size)
    proof = tree.assemble(plan, _nodes(conn, tree.needed(plan), cache))
    return {
        "format": CONSISTENCY_FORMAT,
        "first": checkpoints.document(one),
        "second": checkpoints.document(two),
        "proof": [h.hex() for h in proof],
    }


def checkpoint_sync(conn: Connection, *, size: int | None = None) -> dict[str, Any]:
    return checkpoints.document(_checkpoint(conn, size))


async def _on(sessions: async_sessionmaker[AsyncSession], work: Callable[[Connection], T]) -> T:
    async with sessions() as session:
        conn = await session.connection()
        return await conn.run_sync(work)


async def inclusion(sessions: async_sessionmaker[AsyncSession], **kwargs: Any) -> dict[str, Any]:
    return await _on(sessions, lambda conn: inclusion_sync(conn, **kwargs))


async def consistency(sessions: async_sessionmaker[AsyncSession], **kwargs: Any) -> dict[str, Any]:
    return await _on(sessions, lambda conn: consistency_sync(conn, **kwargs))


async def checkpoint(
    sessions: async_sessionmaker[AsyncSession], *, size: int | None = None
) -> dict[str, Any]:
    return await _on(sessions, lambda conn: checkpoint_sync(conn, size=size))


class ProofServer:
    """Answers proofs for a long-running process, with a shared node cache."""

    def __init__(self, url: str, engine: AsyncEngine) -> None:
        self.cache = NodeCache()
        self._async = engine
        # SQLite: a synchronous engine on a worker thread; each proof is one thread hop, not one per read.
        self._sync: Engine | None = (
            create_engine(url.replace("+aiosqlite", ""), connect_args={"timeout": 30})
            if is_sqlite(url)
            else None
        )

    async def run(self, work: Callable[..., T], **kwargs: Any) -> T:
        if self._sync is not None:
            return await asyncio.to_thread(self._run_sync, work, kwargs)
        async with self._async.connect() as conn:
            return await conn.run_sync(lambda c: work(c, **kwargs))

    def _run_sync(self, work: Callable[..., T], kwargs: dict[str, Any]) -> T:
        assert self._sync is not None
        with self._sync.connect() as conn:
            return work(conn, **kwargs)

    async def inclusion(self, **kwargs: Any) -> dict[str, Any]:
        return await self.run(inclusion_sync, cache=self.cache, **kwargs)

    async def consistency(self, **kwargs: Any) -> dict[str, Any]:
        return await self.run(consistency_sync, cache=self.cache, **kwargs)

    async def checkpoint(self, **kwargs: Any) -> dict[str, Any]:
        return await self.run(checkpoint_sync, **kwargs)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
