"""Retention: entries are kept at least `audit_retention_days` (>= 90); older ones may be archived.

Archiving is exporting, never deleting: the file holds each entry with its inclusion proof against a signed
checkpoint, so it verifies on its own (`switchyard ledger verify-proof FILE`), and the database keeps every
row (removing any would break the chain and every later proof). An entry younger than the retention period
is never archived, whatever the caller asks for. The archive format (JSON Lines):

    {"format": "switchyard.ledger.archive.v1", "first_seq": 1, "last_seq": 900, "cutoff": "...",
     "checkpoint": {<checkpoint document>}}
    {"seq": 1, "leaf_index": 0, "entry": "<base64>", "leaf_hash": "<hex>", "proof": ["<hex>", ...]}
    ...
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from sqlalchemy import Connection, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit import checkpoints, tree
from switchyard.audit.chain import EntryFields, entry_bytes, leaf_hash, timestamp
from switchyard.audit.config import MIN_RETENTION_DAYS
from switchyard.audit.models import Checkpoint, LedgerArchive, LedgerEntry
from switchyard.audit.proofs import NodeCache
from switchyard.audit.service import utc
from switchyard.common.errors import SwitchyardError

ARCHIVE_FORMAT = "switchyard.ledger.archive.v1"
PAGE = 2000


class RetentionViolation(SwitchyardError):
    code = "retention_violation"


@dataclass(frozen=True, slots=True)
class Archived:
    path: Path
    first_seq: int
    last_seq: int
    checkpoint_size: int
    sha256: str


def cutoff_for(*, before: datetime, now: datetime, retention_days: int) -> datetime:
    """The archive cutoff; refuses one that would take in entries younger than the retention period."""
    if retention_days < MIN_RETENTION_DAYS:
        raise RetentionViolation(
            f"retention must be at least {MIN_RETENTION_DAYS} days, not {retention_days}"
        )
    latest_allowed = utc(now) - timedelta(days=retention_days)
    if utc(before) > latest_allowed:
        raise RetentionViolation(
            f"entries recorded after {timestamp(latest_allowed)} are within the {retention_days}-day "
            "retention period and cannot be archived"
        )
    return utc(before)


async def archive(
    sessions: async_sessionmaker[AsyncSession],
    *,
    before: datetime,
    out_dir: Path,
    retention_days: int,
    now: datetime | None = None,
) -> Archived | None:
    """Exports the entries recorded before `before` not archived yet; None when there are none."""
    cutoff = cutoff_for(before=before, now=now or datetime.now(UTC), retention_days=retention_days)
    async with sessions() as session:
        first = (
            int(
                (
                    await session.execute(select(func.coalesce(func.max(LedgerArchive.last_seq), 0)))
                ).scalar_one()
            )
            + 1
        )
        # Every entry up to last_seq is older than the cutoff (recorded_at need not be monotonic across
        # replicas, so stop before the first younger one).
        young = select(func.min(LedgerEntry.seq)).where(LedgerEntry.recorded_at >= cutoff)
        head = select(func.coalesce(func.max(LedgerEntry.seq), 0))
        first_young = (await session.execute(young)).scalar_one()
        last = (
            (first_young - 1) if first_young is not None else int((await session.execute(head)).scalar_one())
        )
        if last < first:
            return None
        cp = (
            await session.execute(select(Checkpoint).order_by(Checkpoint.tree_size.desc()).limit(1))
        ).scalar()
        if cp is None or cp.tree_size < last:
            raise RetentionViolation("the entries to archive are not covered by a checkpoint yet")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"ledger-archive-{first:012d}-{last:012d}.jsonl"
        conn = await session.connection()
        digest = await conn.run_sync(lambda c: _write(c, path, first, last, cp, cutoff))
        record = LedgerArchive(
            first_seq=first,
            last_seq=last,
            checkpoint_size=cp.tree_size,
            path=str(path),
            sha256=digest,
            created_at=datetime.now(UTC),
        )
        session.add(record)
        await session.commit()
    return Archived(path, first, last, cp.tree_size, digest)


def _write(conn: Connection, path: Path, first: int, last: int, cp: Checkpoint, cutoff: datetime) -> str:
    cache = NodeCache()
    sha = hashlib.sha256()
    tmp = path.with_suffix(".partial")
    table = LedgerEntry.__table__
    columns = [table.c[name] for name in EntryFields.__slots__]
    with open(tmp, "wb") as f:
        header = {
            "format": ARCHIVE_FORMAT,
            "first_seq": first,
            "last_seq": last,
            "cutoff": timestamp(cutoff),
            "checkpoint": checkpoints.document(cp),
        }
        line = orjson.dumps(header) + b"\n"
        f.write(line)
        sha.update(line)
        after = first - 1
        while after < last:
            query = select(*columns).where(table.c.seq > after, table.c.seq <= last).order_by(table.c.seq)
            rows = conn.execute(query.limit(PAGE)).all()
            for r in rows:
                fields = EntryFields(*r)
                data = entry_bytes(fields)
                plan = tree.inclusion_plan(fields.seq - 1, cp.tree_size)
                proof = tree.assemble(plan, cache.get(conn, tree.needed(plan)))
                line = (
                    orjson.dumps(
                        {
                            "seq": fields.seq,
                            "leaf_index": fields.seq - 1,
                            "entry": base64.b64encode(data).decode("ascii"),
                            "leaf_hash": leaf_hash(data).hex(),
                            "proof": [h.hex() for h in proof],
                        }
                    )
                    + b"\n"
                )
                f.write(line)
                sha.update(line)
            after = rows[-1][0]
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return sha.hexdigest()
