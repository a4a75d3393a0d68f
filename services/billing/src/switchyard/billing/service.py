"""Recording usage: a completed task priced into one usage entry, however often its result is delivered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.billing.aggregates import count_entry
from switchyard.billing.models import UsageEntry
from switchyard.billing.pricing import price
from switchyard.common import ids
from switchyard.common.events import TaskCompleted, UsageRecorded
from switchyard.common.policy import Policy

Clock = Callable[[], datetime]
# The provider of an entry answered from the gateway's cache: its tokens are recorded, its cost is 0.
CACHE_PROVIDER = "cache"
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Recorded:
    entry: UsageEntry
    created: bool  # False: the task was already charged (a redelivery or a duplicate result)


def _now() -> datetime:
    return datetime.now(UTC)


def usage_entry_id(result_event_id: str) -> str:
    """The entry's id, which is also the id of the UsageRecorded event announcing it, when its caller
    gives none. The service gives one its publisher derived (keyed: `EventPublisher.derived_id`), which
    no bus client can work out from its result's id and take first on the stream; stored, it is the id
    a redelivery announces again (the task's entry is found, never derived anew)."""
    return ids.derived_id(result_event_id, "usage")


async def record_usage(
    sessions: async_sessionmaker[AsyncSession],
    *,
    event_id: str,
    completed: TaskCompleted,
    policy: Policy,
    clock: Clock = _now,
    entry_id: str | None = None,
) -> Recorded:
    """Prices `completed` and stores it, once per task: a second call returns the stored entry unchanged."""
    existing = await usage_for_task(sessions, task_id=completed.task_id, tenant_id=completed.tenant_id)
    if existing is not None:
        return Recorded(existing, created=False)
    entry = new_entry(event_id=event_id, completed=completed, policy=policy, now=clock(), entry_id=entry_id)
    kept, created = await store_once(
        sessions,
        entry,
        stored=lambda: usage_for_task(sessions, task_id=completed.task_id, tenant_id=completed.tenant_id),
    )
    return Recorded(kept, created=created)


def new_entry(
    *, event_id: str, completed: TaskCompleted, policy: Policy, now: datetime, entry_id: str | None = None
) -> UsageEntry:
    """The priced usage entry of `completed` (not stored)."""
    cached = completed.cache is not None  # answered from the gateway's cache: no provider was paid
    cost = price(
        policy=policy,
        model=completed.model,
        prompt_tokens=0 if cached else completed.usage.prompt_tokens,
        completion_tokens=0 if cached else completed.usage.completion_tokens,
        cache_read_tokens=completed.usage.cache_read_tokens,
        cache_write_tokens=completed.usage.cache_write_tokens,
    )
    return UsageEntry(
        id=entry_id or usage_entry_id(event_id),
        task_id=completed.task_id,
        event_id=event_id,
        tenant_id=completed.tenant_id,
        user_id=completed.user_id,
        api_key_id=completed.api_key_id,
        model=completed.model,
        provider=CACHE_PROVIDER if cached else completed.provider,
        tier=completed.tier,
        prompt_tokens=completed.usage.prompt_tokens,
        completion_tokens=completed.usage.completion_tokens,
        cache_read_tokens=completed.usage.cache_read_tokens,
        cache_write_tokens=completed.usage.cache_write_tokens,
        cost_usd=cost.cost_usd,
        priced=cost.priced,
        usage_estimated=completed.usage_estimated,
        created_at=now,
        policy_version=cost.policy_version,
    )


async def store_once(
    sessions: async_sessionmaker[AsyncSession], entry: E, *, stored: Callable[[], Awaitable[E | None]]
) -> tuple[E, bool]:
    """Inserts `entry` and adds it to its daily aggregate in one transaction; when a unique key shows
    another replica stored it first, returns that one instead (and the aggregate is left untouched).

    Returns (the entry kept, whether this call created it).
    """
    try:
        async with sessions() as session, session.begin():
            session.add(entry)
            await session.flush()  # the unique key decides first: a duplicate never reaches the aggregate
            await count_entry(session, entry)  # type: ignore[arg-type]
    except IntegrityError:
        winner = await stored()
        if winner is None:
            raise
        return winner, False
    return entry, True


async def usage_for_task(
    sessions: async_sessionmaker[AsyncSession], *, task_id: str, tenant_id: str
) -> UsageEntry | None:
    """The organisation's task's entry (a task id is charged once per organisation)."""
    async with sessions() as session:
        found = select(UsageEntry).where(UsageEntry.task_id == task_id, UsageEntry.tenant_id == tenant_id)
        return (await session.execute(found)).scalar_one_or_none()


def usage_event(entry: UsageEntry) -> UsageRecorded:
    return UsageRecorded(
        task_id=entry.task_id,
        tenant_id=entry.tenant_id,
        user_id=entry.user_id,
        model=entry.model,
        provider=entry.provider,
        tier=entry.tier,
        prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens,
        cache_read_tokens=entry.cache_read_tokens or 0,
        cache_write_tokens=entry.cache_write_tokens or 0,
        cost_usd=float(entry.cost_usd),
        priced=entry.priced,
        cached=entry.provider == CACHE_PROVIDER,
        policy_version=entry.policy_version,
    )
