"""Usage entries on real SQLite and PostgreSQL: priced exactly, charged once per task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from switchyard.billing.db import migrations
from switchyard.billing.models import UsageEntry
from switchyard.billing.service import record_usage, usage_entry_id, usage_event, usage_for_task
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.events import TaskCompleted, Usage
from tests.support.prices import price_sheet

pytestmark = pytest.mark.integration

Sessions = async_sessionmaker[AsyncSession]


def completed(
    task_id: str = "t1", model: str = "anthropic/claude-sonnet-4-6", **changes: object
) -> TaskCompleted:
    values: dict[str, object] = {
        "task_id": task_id,
        "tenant_id": "acme",
        "user_id": "u1",
        "api_key_id": "k1",
        "model": model,
        "provider": model.split("/")[0],
        "tier": "standard",
        "content": "an answer",
        "finish_reason": "stop",
        "usage": Usage(prompt_tokens=1500, completion_tokens=333),
        "attempts": 1,
        "latency_ms": 80.0,
        "completed_at": datetime.now(UTC),
    }
    values.update(changes)
    return TaskCompleted(**values)  # type: ignore[arg-type]


@pytest.fixture
async def billing_db(db_url: str) -> AsyncIterator[tuple[AsyncEngine, Sessions]]:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    try:
        yield engine, sessionmaker(engine)
    finally:
        await engine.dispose()


async def _count(sessions: Sessions) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.count()).select_from(UsageEntry))).scalar_one())


async def test_a_completed_task_is_priced_and_stored(billing_db: tuple[AsyncEngine, Sessions]) -> None:
    _, sessions = billing_db
    recorded = await record_usage(sessions, event_id="e1", completed=completed(), policy=price_sheet())
    assert recorded.created
    stored = await usage_for_task(sessions, task_id="t1", tenant_id="acme")
    assert stored is not None
    # claude-sonnet-4-6: 0.003 per 1K input, 0.015 per 1K output
    assert stored.cost_usd == Decimal("0.0094950000") and stored.priced
    assert (stored.id, stored.event_id, stored.tenant_id, stored.user_id) == (
        usage_entry_id("e1"),
        "e1",
        "acme",
        "u1",
    )
    assert (stored.prompt_tokens, stored.completion_tokens, stored.tier) == (1500, 333, "standard")
    event = usage_event(stored)
    assert event.cost_usd == pytest.approx(0.009495) and event.task_id == "t1"


async def test_an_unknown_model_is_stored_unpriced(billing_db: tuple[AsyncEngine, Sessions]) -> None:
    _, sessions = billing_db
    await record_usage(
        sessions, event_id="e1", completed=completed(model="openai/new-model"), policy=price_sheet()
    )
    stored = await usage_for_task(sessions, task_id="t1", tenant_id="acme")
    assert stored is not None and not stored.priced and stored.cost_usd == 0


async def test_a_task_is_charged_once(billing_db: tuple[AsyncEngine, Sessions]) -> None:
    _, sessions = billing_db
    policy = price_sheet()
    first = await record_usage(sessions, event_id="e1", completed=completed(), policy=policy)
    again = await record_usage(sessions, event_id="e1", completed=completed(), policy=policy)
    # A second result for the same task (another event id): still the first entry, same announcement id.
    other = await record_usage(sessions, event_id="e2", completed=completed(model="openai/o3"), policy=policy)
    assert first.created and not again.created and not other.created
    assert (
        again.entry.id == other.entry.id == first.entry.id
        and other.entry.model == "anthropic/claude-sonnet-4-6"
    )
    assert await _count(sessions) == 1


async def test_replicas_racing_on_one_task_store_one_entry(
    billing_db: tuple[AsyncEngine, Sessions], db_url: str
) -> None:
    _, sessions = billing_db
    other = create_engine(db_url)
    try:
        replica = sessionmaker(other)
        policy = price_sheet()
        results = await asyncio.gather(
            *(
                record_usage(s, event_id="e1", completed=completed(), policy=policy)
                for s in (sessions, replica) * 4
            )
        )
    finally:
        await other.dispose()
    assert sum(r.created for r in results) == 1 and {r.entry.id for r in results} == {usage_entry_id("e1")}
    assert await _count(sessions) == 1
