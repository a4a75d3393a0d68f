"""A tenant's budget headroom (USD it may still spend), shared through JetStream KV.

The gateway writes it after every budget change (key: the tenant id; value:
`{"headroom_usd": float | null, "limit_usd", "spent_usd", "period", "updated_at"}`); the router reads it
to downgrade a tenant that is running out of money. No entry, or `headroom_usd: null`, means no limit.
"""

from __future__ import annotations

import time

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field

from switchyard.common import kv, kv_guard, subjects


class BudgetHeadroom(BaseModel):
    model_config = ConfigDict(extra="ignore")

    headroom_usd: float | None = Field(description="what the tenant may still spend; null: no limit")
    limit_usd: float | None = None
    spent_usd: float | None = None
    period: str | None = None
    updated_at: float = Field(default_factory=time.time, description="wall clock, seconds")


async def budgets_bucket(js: JetStreamContext) -> KeyValue:
    return await kv.bucket(js, subjects.KV_BUDGETS)


async def write_headroom(bucket: KeyValue, tenant_id: str, headroom: BudgetHeadroom) -> None:
    await bucket.put(kv.safe_key(tenant_id), headroom.model_dump_json().encode())


async def read_headroom(bucket: KeyValue, tenant_id: str) -> float | None:
    """USD left, or None for no limit; raises kv_guard.ForgedEntry for a revision the gateway did not
    write (the server stored it on a client's behalf)."""
    value, _ = await kv_guard.read(bucket, kv.safe_key(tenant_id))
    if not value:
        return None
    return BudgetHeadroom.model_validate_json(value).headroom_usd


# Budget ceilings (bucket `switchyard-budget-limits`), so billing can raise alerts at 50/80/100 % of the
# budgets the gateway enforces: `org.<tenant>` (monthly) and `user.<tenant>.<user>` (daily), value
# `{"micro_usd": int | null}` (null: no limit). The gateway writes one when it first sees or changes it.
class BudgetLimit(BaseModel):
    model_config = ConfigDict(extra="ignore")

    micro_usd: int | None = Field(description="the ceiling in micro-USD; null: no limit")
    updated_at: float = Field(default_factory=time.time)


def limit_key(tenant_id: str, user: str | None = None) -> str:
    if user is None:
        return f"org.{kv.safe_key(tenant_id)}"
    return f"user.{kv.safe_key(tenant_id)}.{kv.safe_key(user)}"


async def limits_bucket(js: JetStreamContext) -> KeyValue:
    return await kv.bucket(js, subjects.KV_BUDGET_LIMITS)


async def write_limit(bucket: KeyValue, key: str, micro_usd: int | None) -> None:
    await bucket.put(key, BudgetLimit(micro_usd=micro_usd).model_dump_json().encode())


async def read_limit(bucket: KeyValue, key: str) -> int | None:
    """The ceiling in micro-USD, or None (no limit, or none published yet); raises kv_guard.ForgedEntry
    for a revision the gateway did not write."""
    value, _ = await kv_guard.read(bucket, key)
    if not value:
        return None
    return BudgetLimit.model_validate_json(value).micro_usd
