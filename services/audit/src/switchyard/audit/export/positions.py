"""Each exporter's position: the highest seq delivered, stored in the ledger database (durable, resumable)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit.models import ExportPosition


async def load(sessions: async_sessionmaker[AsyncSession], name: str) -> int:
    async with sessions() as session:
        row = await session.get(ExportPosition, name)
    return row.seq if row is not None else 0


async def save(sessions: async_sessionmaker[AsyncSession], name: str, seq: int) -> None:
    """Moves the position forward (never back: a slower replica of the exporter cannot undo progress)."""
    for _ in range(3):
        try:
            async with sessions() as session, session.begin():
                row = await session.get(ExportPosition, name, with_for_update=True)
                if row is None:
                    session.add(ExportPosition(name=name, seq=seq, updated_at=datetime.now(UTC)))
                elif seq > row.seq:
                    row.seq, row.updated_at = seq, datetime.now(UTC)
            return
        except IntegrityError:  # created concurrently: update it on the next pass
            continue
