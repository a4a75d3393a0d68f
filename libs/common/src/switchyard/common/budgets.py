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

from switchyard.common import kv, subjects


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
    """USD left, or None for no limit."""
    value, _ = await kv.read(bucket, kv.safe_key(tenant_id))
    if not value:
        return None
    return BudgetHeadroom.model_validate_json(value).headroom_usd
