"""One entry per event id per organisation, on real SQLite and PostgreSQL: other systems choose their
CloudEvent ids, so one organisation's choice must not keep another's event out of the ledger; a redelivery
of an organisation's event, and of a tenant-less (system) one, is still recorded once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from switchyard.audit.db import migrations
from switchyard.audit.entries import UNKNOWN_TENANT
from switchyard.audit.models import LedgerEntry
from switchyard.audit.service import TipCache, append_entries
from switchyard.audit.verify import verify_ledger
from switchyard.common.db import create_engine, sessionmaker
from tests.support.ledger import draft

pytestmark = pytest.mark.integration

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def ledger(db_url: str) -> AsyncIterator[tuple[AsyncEngine, Sessions]]:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    try:
        yield engine, sessionmaker(engine)
    finally:
        await engine.dispose()


async def _stored(sessions: Sessions) -> list[tuple[int, str, str]]:
    async with sessions() as session:
        found = await session.execute(
            select(LedgerEntry.seq, LedgerEntry.tenant_id, LedgerEntry.event_id).order_by(LedgerEntry.seq)
        )
        return [(s, t, e) for s, t, e in found.all()]


async def test_two_organisations_events_of_one_id_each_get_their_entry(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    """globex publishes first under the id acme's event will have: acme's is still recorded, in the same
    batch or a later one, and each organisation's redelivery stays one entry."""
    _, sessions = ledger
    first = await append_entries(sessions, drafts=[draft(1, tenant="globex", event_id="job-1")])
    both = await append_entries(
        sessions,
        drafts=[draft(2, event_id="job-1"), draft(3, tenant="initech", event_id="job-1")],
    )
    assert [(a.seq, a.created) for a in first + both] == [(1, True), (2, True), (3, True)]
    again = await append_entries(
        sessions,
        drafts=[
            draft(2, event_id="job-1"),
            draft(1, tenant="globex", event_id="job-1"),
            draft(3, tenant="initech", event_id="job-1"),
        ],
    )
    assert [(a.seq, a.created) for a in again] == [(2, False), (1, False), (3, False)]
    assert await _stored(sessions) == [(1, "globex", "job-1"), (2, "acme", "job-1"), (3, "initech", "job-1")]
    assert (await verify_ledger(sessions)).ok


async def test_a_writer_that_remembers_its_head_still_records_each_organisation_once(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    """With the head cached, no stored ids are read: the database's unique (tenant, event id) is what
    refuses a redelivery, and only it."""
    _, sessions = ledger
    tip = TipCache()
    await append_entries(sessions, drafts=[draft(1, event_id="job-1")], tip=tip)
    (other,) = await append_entries(sessions, drafts=[draft(2, tenant="globex", event_id="job-1")], tip=tip)
    (redelivered,) = await append_entries(sessions, drafts=[draft(1, event_id="job-1")], tip=tip)
    assert (other.seq, other.created, redelivered.seq, redelivered.created) == (2, True, 1, False)
    assert [t for _, t, _ in await _stored(sessions)] == ["acme", "globex"]


async def test_tenant_less_events_of_one_id_are_still_one_entry(ledger: tuple[AsyncEngine, Sessions]) -> None:
    _, sessions = ledger
    system = [draft(n, tenant=UNKNOWN_TENANT, event_id="sys-1") for n in (1, 2)]
    placed = await append_entries(sessions, drafts=system)
    again = await append_entries(sessions, drafts=[*system, draft(3, event_id="sys-1")])
    placed_again = [(a.seq, a.created) for a in placed + again]
    assert placed_again == [(1, True), (1, True), (1, False), (1, False), (2, True)]
    assert await _stored(sessions) == [(1, UNKNOWN_TENANT, "sys-1"), (2, "acme", "sys-1")]
