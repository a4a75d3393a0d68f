"""Appending to the ledger: in order, gapless, once per event id of each tenant, safe against concurrent
writers.

Several drafts are appended in one transaction. The head is read, each new entry takes the next seq and
links to the previous hash, and the rows are inserted together with the Merkle nodes they complete (see
`tree.py`), so the tree always covers exactly the entries. Another writer (a replica) appending at the same
time collides on the seq primary key (and the database's extend-the-head trigger), so one transaction
fails, is rolled back and retried on the new head: the chain never forks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, insert, or_, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from switchyard.audit import tree
from switchyard.audit.chain import (
    GENESIS_HASH,
    EntryFields,
    canonical_json,
    chain_hash,
    entry_bytes,
    leaf_hash,
)
from switchyard.audit.entries import EntryDraft
from switchyard.audit.models import LedgerEntry, MerkleNode
from switchyard.common.errors import SwitchyardError, TransientError

log = logging.getLogger(__name__)

APPEND_ATTEMPTS = 12
NODES_PER_QUERY = 64  # a proof needs at most ~2 per level
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Appended:
    event_id: str
    seq: int
    created: bool  # False: the event was already in the ledger (a redelivery or a duplicate)


def utc(value: datetime) -> datetime:
    """Stored timestamps are UTC: SQLite keeps the wall time and drops the offset, so convert first."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Tip:
    """The head and the tree's frontier as this process last committed them."""

    seq: int
    entry_hash: str
    frontier: dict[tree.Node, bytes]


@dataclass(slots=True)
class TipCache:
    """Lets a writer's next append skip its reads (the event ids already stored, the head, the frontier).

    Only a hint, checked in the same transaction: a stale head (another replica appended) collides on the
    seq primary key and the extend-the-head trigger, an event already stored on the unique (event id, tenant).
    Either way the transaction rolls back, the hint is forgotten, and the append is retried with the reads.
    The frontier is right whenever the head is: the head's hash commits to every entry before it.
    """

    known: Tip | None = None


async def append_entries(
    sessions: async_sessionmaker[AsyncSession],
    *,
    drafts: Sequence[EntryDraft],
    clock: Clock = _now,
    attempts: int = APPEND_ATTEMPTS,
    tip: TipCache | None = None,
) -> list[Appended]:
    """Appends the drafts not yet in the ledger; returns, for each draft in order, where it is."""
    if not drafts:
        return []
    cache = tip if tip is not None else TipCache()
    attempt = 1
    while True:
        known, cache.known = cache.known, None  # a failure, or an unknown outcome, forgets it
        try:
            # One greenlet for the whole transaction, Core statements: no ORM work per statement.
            async with sessions() as session, session.begin():
                placed, cache_after = await session.run_sync(_append_once, drafts, clock(), known)
        except DBAPIError as exc:
            if not retryable(exc):
                raise Unwritable(f"the database rejected the entries: {exc.orig}") from exc
            if known is not None:
                continue  # a stale hint or a redelivered event: read what is stored and try again at once
            if attempt == attempts:
                raise TransientError(
                    f"could not append to the ledger after {attempts} attempts: {exc}"
                ) from exc
            log.info("ledger append collided (attempt %d): %s", attempt, exc.orig)
            await asyncio.sleep(min(0.005 * 2**attempt, 0.5) * (0.5 + random.random()))
            attempt += 1
            continue
        cache.known = cache_after
        return [placed[_key(d)] for d in drafts]


class Unwritable(SwitchyardError):
    """The database refuses these entries as they are (a value it cannot store): retrying cannot help."""

    code = "ledger_unwritable"


# SQLSTATE classes worth another try: connection exceptions, transaction rollbacks, insufficient
# resources, operator intervention (a restart).
_RETRY_SQLSTATE_CLASSES = ("08", "40", "53", "57")


def retryable(exc: DBAPIError) -> bool:
    """A collision with another writer (unique/trigger), a busy or unreachable database: try again."""
    if exc.connection_invalidated or isinstance(exc, IntegrityError | OperationalError | InterfaceError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in _RETRY_SQLSTATE_CLASSES


_HEAD = (
    select(LedgerEntry.__table__.c.seq, LedgerEntry.__table__.c.entry_hash)
    .order_by(LedgerEntry.__table__.c.seq.desc())
    .limit(1)
)
_ENTRIES = LedgerEntry.__table__.c
# Candidates by event id (its index), kept only where the tenant matches too: ids are other systems' choice,
# so two organisations may each have an event of one id, and each is recorded (migration au0007).
_STORED = select(_ENTRIES.tenant_id, _ENTRIES.event_id, _ENTRIES.seq).where(
    _ENTRIES.event_id.in_(bindparam("ids", expanding=True))
)
Key = tuple[str, str]  # (tenant_id, event_id): what the ledger records once
_PLAN_FOR_NOW = text("SET LOCAL plan_cache_mode = force_custom_plan")


def _key(draft: EntryDraft) -> Key:
    return draft.tenant_id, draft.event_id


def _append_once(
    session: Session, drafts: Sequence[EntryDraft], now: datetime, known: Tip | None
) -> tuple[dict[Key, Appended], Tip | None]:
    """One attempt, inside the caller's transaction. Without `known`, reads which events are stored, the
    head and the frontier; with it, trusts it (the database checks it). Returns where each event is and
    the new tip (None when nothing was appended)."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        # A prepared statement (asyncpg's, and the triggers' in PL/pgSQL) keeps the generic plan made while
        # the table was small: a sequential scan per batch, slower as the ledger grows. Plan for the table
        # as it is now.
        conn.execute(_PLAN_FOR_NOW)
    if known is None:
        ids = list(dict.fromkeys(d.event_id for d in drafts))
        wanted = {_key(d) for d in drafts}
        stored = conn.execute(_STORED, {"ids": ids}).all()
        placed = {
            (tenant, eid): Appended(eid, seq, created=False)
            for tenant, eid, seq in stored
            if (tenant, eid) in wanted
        }
        top = conn.execute(_HEAD).first()
        seq, prev = (top[0], top[1]) if top is not None else (0, GENESIS_HASH)
    else:
        placed, seq, prev = {}, known.seq, known.entry_hash
    recorded_at = utc(now)
    rows: list[dict[str, Any]] = []
    leaves: list[bytes] = []
    for draft in drafts:
        if _key(draft) in placed:
            continue
        seq += 1
        fields = EntryFields(
            seq=seq,
            event_id=draft.event_id,
            recorded_at=recorded_at,
            occurred_at=utc(draft.occurred_at),
            tenant_id=draft.tenant_id,
            actor=draft.actor,
            action=draft.action,
            resource=draft.resource,
            outcome=draft.outcome,
            details=canonical_json(draft.details),
            provenance=None if draft.provenance is None else canonical_json(draft.provenance),
        )
        leaf = leaf_hash(entry_bytes(fields))
        digest = chain_hash(prev, leaf)
        leaves.append(leaf)
        rows.append({**_columns(fields), "prev_hash": prev, "entry_hash": digest})
        placed[_key(draft)] = Appended(draft.event_id, seq, created=True)
        prev = digest
    if not rows:
        return placed, None
    if any("provenance" in row for row in rows):  # one statement, one set of columns
        rows = [{"provenance": None, **row} for row in rows]
    size = rows[0]["seq"] - 1
    edge = known.frontier if known is not None else read_nodes(conn, set(tree.frontier(size)))
    made = tree.extend(size, edge, leaves)
    # With RETURNING, SQLAlchemy sends "insertmanyvalues" batches (multi-row VALUES, compiled once) rather
    # than one statement per row: PostgreSQL then checks the head once per batch.
    conn.execute(insert(LedgerEntry).returning(LedgerEntry.seq), rows)
    conn.execute(
        insert(MerkleNode).returning(MerkleNode.level),
        [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in made],
    )
    known_nodes = {**edge, **{(lv, ix): h for lv, ix, h in made}}
    return placed, Tip(seq, prev, {node: known_nodes[node] for node in tree.frontier(seq)})


def read_nodes(conn: Connection, nodes: set[tree.Node]) -> dict[tree.Node, bytes]:
    """`node_hashes` on a synchronous connection (the ledger writer's transaction, the proof server)."""
    found: dict[tree.Node, bytes] = {}
    ordered = sorted(nodes)
    for start in range(0, len(ordered), NODES_PER_QUERY):
        chunk = set(ordered[start : start + NODES_PER_QUERY])
        rows = conn.execute(nodes_query(len(chunk)), nodes_params(chunk))
        found.update(collect_nodes(chunk, rows.all()))
    return found


@functools.cache
def nodes_query(count: int) -> Select[tuple[int, int, bytes]]:
    """`(level = ? AND idx = ?) OR ...`: each pair an index lookup on both databases (SQLite scans the table
    for a row-value IN list). One statement per count, so SQLAlchemy compiles each once."""
    t = MerkleNode.__table__
    pairs = [(t.c.level == bindparam(f"l{i}")) & (t.c.idx == bindparam(f"i{i}")) for i in range(count)]
    return select(t.c.level, t.c.idx, t.c.hash).where(or_(*pairs))


def nodes_params(nodes: set[tree.Node]) -> dict[str, int]:
    params: dict[str, int] = {}
    for i, (level, index) in enumerate(nodes):
        params[f"l{i}"], params[f"i{i}"] = level, index
    return params


def collect_nodes(nodes: set[tree.Node], rows: Iterable[Any]) -> dict[tree.Node, bytes]:
    found = {(level, index): bytes(digest) for level, index, digest in rows}
    if len(found) != len(nodes):
        missing = sorted(nodes - found.keys())[:3]
        raise TreeIncomplete(f"merkle_nodes lacks {missing}: the tree does not cover the ledger")
    return found


async def node_hashes(session: AsyncSession, nodes: set[tree.Node]) -> dict[tree.Node, bytes]:
    """The stored hashes of these perfect nodes; all of them must exist."""
    if not nodes:
        return {}
    return await session.run_sync(lambda sync: read_nodes(sync.connection(), nodes))


class TreeIncomplete(SwitchyardError):
    """The stored tree is missing nodes the ledger's entries imply (rows removed behind our back)."""

    code = "ledger_tree_incomplete"


def _columns(fields: EntryFields) -> dict[str, Any]:
    # Without a provenance (v1: drafts of no event, a database before au0006) the column is left out.
    names = EntryFields.__slots__ if fields.provenance is not None else _V1_COLUMNS
    return {name: getattr(fields, name) for name in names}


_V1_COLUMNS = tuple(name for name in EntryFields.__slots__ if name != "provenance")


async def head(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, str]:
    """(seq, entry_hash) of the last entry; (0, the genesis hash) when the ledger is empty."""
    async with sessions() as session:
        row = (
            await session.execute(
                select(LedgerEntry.seq, LedgerEntry.entry_hash).order_by(LedgerEntry.seq.desc()).limit(1)
            )
        ).first()
    return (row[0], row[1]) if row is not None else (0, GENESIS_HASH)
