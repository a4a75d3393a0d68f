"""A rolling upgrade: billing replicas of the previous release keep writing on the migrated schema.

`switchyard db upgrade` runs before the services roll (docs/operations/upgrades.md), so for a while old
billing replicas write to the new schema. The previous release (968de8c) counts each entry in its daily row
with the statement recorded below (its `aggregates._upsert`); bi0009 put the API key into `usage_daily`'s
primary key, so that statement named no constraint any more and every usage entry of an old replica
failed (retried, then dead-lettered) until billing had rolled. From bi0010 the keyless row keeps its key and
the per-key rows live in `usage_daily_keys`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from switchyard.billing.db import migrations
from switchyard.billing.reports import usage_report
from switchyard.common.billing_rpc import UsageQuery
from switchyard.common.db import create_engine, sessionmaker

pytestmark = pytest.mark.integration
TODAY = datetime.now(UTC).date()

# The previous release's daily upsert, as SQLAlchemy compiled it (the same text on SQLite and PostgreSQL).
PREVIOUS_UPSERT = sa.text(
    "INSERT INTO usage_daily (tenant_id, day, user_id, model, tier, kind, requests, prompt_tokens, "
    "completion_tokens, cache_read_tokens, cache_write_tokens, cost_e10, unpriced, estimated) VALUES "
    "(:tenant_id, :day, :user_id, :model, :tier, :kind, :requests, :prompt_tokens, :completion_tokens, "
    ":cache_read_tokens, :cache_write_tokens, :cost_e10, :unpriced, :estimated) "
    "ON CONFLICT (tenant_id, day, user_id, model, tier, kind) DO UPDATE SET "
    "requests = usage_daily.requests + excluded.requests, "
    "prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens, "
    "cache_read_tokens = usage_daily.cache_read_tokens + excluded.cache_read_tokens, "
    "cache_write_tokens = usage_daily.cache_write_tokens + excluded.cache_write_tokens, "
    "cost_e10 = usage_daily.cost_e10 + excluded.cost_e10, "
    "unpriced = usage_daily.unpriced + excluded.unpriced, "
    "estimated = usage_daily.estimated + excluded.estimated"
)


def _row(**over: object) -> dict[str, object]:
    return {
        "tenant_id": "acme",
        "day": TODAY,
        "user_id": "u1",
        "model": "openai/gpt-5-mini",
        "tier": "fast",
        "kind": "task",
        "requests": 1,
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_e10": 350,
        "unpriced": 0,
        "estimated": 0,
        **over,
    }


async def test_the_previous_release_counts_its_entries_on_the_migrated_schema(db_url: str) -> None:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    try:
        for _ in range(2):  # its first entry of the day, then one more in the same row
            async with sessions() as session, session.begin():
                await session.execute(PREVIOUS_UPSERT, _row())
        report = await usage_report(sessions, UsageQuery(tenant_id="acme", start=TODAY, end=TODAY))
        assert (report.totals.requests, report.totals.prompt_tokens) == (2, 20)
    finally:
        await engine.dispose()


async def test_bi0010_down_to_bi0009_keeps_every_row(db_url: str) -> None:
    """The downgrade puts the keyed rows back into usage_daily; what only an old replica counted (no key)
    stays, under no key."""
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    keyed = sa.table("usage_daily_keys", *(sa.column(c) for c in [*_row(), "api_key_id"]))
    try:
        async with sessions() as session, session.begin():
            await session.execute(PREVIOUS_UPSERT, _row(tier="smart"))  # an old replica's: no key
            await session.execute(PREVIOUS_UPSERT, _row())  # a new one's, counted in both
            await session.execute(sa.insert(keyed).values(**_row(), api_key_id="k1"))
        await migrations().downgrade(db_url, "bi0009")
        async with sessions() as session:
            rows = await session.execute(sa.text("SELECT api_key_id, tier, requests FROM usage_daily"))
            assert sorted(tuple(r) for r in rows) == [("", "smart", 1), ("k1", "fast", 1)]
    finally:
        await engine.dispose()
