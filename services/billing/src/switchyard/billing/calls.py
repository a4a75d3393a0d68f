"""Charging billable provider calls: tokens spent on answers that were not delivered (parallel losers,
cascade steps refused by a quality check). Once per call event, however often it is delivered; the
delivered answer is charged by its task's result (service.py), so nothing is charged twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.billing.models import CallUsageEntry
from switchyard.billing.pricing import price
from switchyard.billing.service import Clock, store_once, usage_entry_id
from switchyard.common.events import ProviderCallRecorded, UsageRecorded
from switchyard.common.policy import Policy


@dataclass(frozen=True, slots=True)
class CallRecorded:
    entry: CallUsageEntry
    created: bool  # False: this call was already charged (a redelivery)


def _now() -> datetime:
    return datetime.now(UTC)


def is_billable(call: ProviderCallRecorded) -> bool:
    return call.billable and call.usage.total_tokens > 0


async def record_call_usage(
    sessions: async_sessionmaker[AsyncSession],
    *,
    event_id: str,
    call: ProviderCallRecorded,
    policy: Policy,
    clock: Clock = _now,
    entry_id: str | None = None,
) -> CallRecorded:
    existing = await call_entry(sessions, event_id=event_id)
    if existing is not None:
        return CallRecorded(existing, created=False)
    cost = price(
        policy=policy,
        model=call.model,
        prompt_tokens=call.usage.prompt_tokens,
        completion_tokens=call.usage.completion_tokens,
        cache_read_tokens=call.usage.cache_read_tokens,
        cache_write_tokens=call.usage.cache_write_tokens,
    )
    entry = CallUsageEntry(
        id=entry_id or usage_entry_id(event_id),
        event_id=event_id,
        task_id=call.task_id,
        tenant_id=call.tenant_id,
        user_id=call.user_id,
        api_key_id=call.api_key_id,
        model=call.model,
        provider=call.provider,
        outcome=call.outcome,
        prompt_tokens=call.usage.prompt_tokens,
        completion_tokens=call.usage.completion_tokens,
        cache_read_tokens=call.usage.cache_read_tokens,
        cache_write_tokens=call.usage.cache_write_tokens,
        usage_estimated=call.usage_estimated,
        cost_usd=cost.cost_usd,
        priced=cost.priced,
        created_at=clock(),
        policy_version=cost.policy_version,
    )
    kept, created = await store_once(sessions, entry, stored=lambda: call_entry(sessions, event_id=event_id))
    return CallRecorded(kept, created=created)


async def call_entry(sessions: async_sessionmaker[AsyncSession], *, event_id: str) -> CallUsageEntry | None:
    async with sessions() as session:
        return (
            await session.execute(select(CallUsageEntry).where(CallUsageEntry.event_id == event_id))
        ).scalar_one_or_none()


def call_usage_event(entry: CallUsageEntry) -> UsageRecorded:
    return UsageRecorded(
        task_id=entry.task_id,
        tenant_id=entry.tenant_id,
        user_id=entry.user_id,
        model=entry.model,
        provider=entry.provider,
        tier="call",
        prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens,
        cache_read_tokens=entry.cache_read_tokens or 0,
        cache_write_tokens=entry.cache_write_tokens or 0,
        cost_usd=float(entry.cost_usd),
        priced=entry.priced,
        kind="call",
        call_event_id=entry.event_id,
        policy_version=entry.policy_version,
    )
