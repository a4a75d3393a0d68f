"""Billing's tables: priced usage entries, their daily aggregates, budget alerts and webhook endpoints."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Integer,
    MetaData,
    Numeric,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from switchyard.billing.pricing import POLICY_VERSION_CHARS
from switchyard.common.db import UTCDateTime

# USD with 10 decimal places: a single token of the cheapest priced model costs ~1e-7 USD.
Money = Numeric(20, 10, asdecimal=True)


class BillingBase(DeclarativeBase):
    metadata = MetaData()


class UsageEntry(BillingBase):
    __tablename__ = "usage_entries"
    # a task is charged once per organisation (bi0011): other systems choose their tasks' ids on the bus
    __table_args__ = (UniqueConstraint("task_id", "tenant_id", name="uq_usage_entries_task_tenant"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(128))  # the TaskCompleted event that was priced
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(64))
    # the id of the API key that ran it (never its secret; null: none, or charged before bi0009)
    api_key_id: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    # of prompt_tokens: read from / written to the provider's prompt cache (priced at its cache prices)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cost_usd: Mapped[Decimal] = mapped_column(Money)
    priced: Mapped[bool] = mapped_column(Boolean)
    # the upstream reported no usage: the token counts are the executor's estimate
    usage_estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # the `version` of the policy whose prices charged it (None: charged before bi0007 recorded it)
    policy_version: Mapped[str | None] = mapped_column(String(POLICY_VERSION_CHARS))


class CallUsageEntry(BillingBase):
    """A provider call whose tokens were spent but whose answer was not the one delivered (a parallel
    loser, a cascade step that failed its checks): charged once per call event, beside the task's entry."""

    __tablename__ = "call_usage_entries"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)  # the ProviderCallRecorded event
    task_id: Mapped[str] = mapped_column(String(64), index=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    # the task's user (null: none, or a call charged before bi0008, when calls were charged to no user)
    user_id: Mapped[str | None] = mapped_column(String(64))
    api_key_id: Mapped[str | None] = mapped_column(String(64))  # as UsageEntry's
    model: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    # of prompt_tokens: read from / written to the provider's prompt cache (priced at its cache prices)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    usage_estimated: Mapped[bool] = mapped_column(Boolean)
    cost_usd: Mapped[Decimal] = mapped_column(Money)
    priced: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    policy_version: Mapped[str | None] = mapped_column(String(POLICY_VERSION_CHARS))  # as UsageEntry's


class _DailySums:
    """A daily row's summed columns (usage_daily's and usage_daily_keys')."""

    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cost_e10: Mapped[int] = mapped_column(BigInteger)  # USD x 1e10
    unpriced: Mapped[int] = mapped_column(BigInteger)  # entries whose model had no price
    # entries whose token counts are the executor's estimate (the upstream reported none)
    estimated: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class UsageDaily(_DailySums, BillingBase):
    """Aggregates per organisation, day (UTC), user, model, tier and kind, updated in the same transaction
    as the usage entry they count, so each entry is counted exactly once. Money is an integer count of
    1e-10 USD (the entries' precision): sums are exact on SQLite (which stores Numeric as a float) and on
    PostgreSQL alike. Its primary key is the previous release's (billing replicas of both write it during a
    rolling upgrade); the same sums per API key are `UsageDailyKey`'s."""

    __tablename__ = "usage_daily"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" when no user (a service key)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    tier: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # task | call


class UsageDailyKey(_DailySums, BillingBase):
    """`UsageDaily`'s sums per API key as well (bi0010), in the same transaction: the usage report reads
    them when it groups or filters by key. Entries counted by a replica of a release before bi0009 are not
    in it (they name no key: in `usage_daily` only)."""

    __tablename__ = "usage_daily_keys"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # "" when none is known (a task of the bus, or charged before bi0009)
    api_key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    tier: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)


class BudgetAlert(BillingBase):
    """One budget threshold crossed, once per account and period: the row is the idempotency key and the
    outbox of its event (`published` turns true once the bus acknowledged it)."""

    __tablename__ = "budget_alerts"
    __table_args__ = (UniqueConstraint("tenant_id", "scope", "account", "period", "threshold_pct"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # also the event id
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(String(8))  # user (daily) | org (monthly)
    account: Mapped[str] = mapped_column(String(64))  # the user id, or the tenant id for org
    period: Mapped[str] = mapped_column(String(8))  # YYYYMMDD | YYYYMM
    threshold_pct: Mapped[int] = mapped_column(Integer)
    limit_e10: Mapped[int] = mapped_column(BigInteger)
    spent_e10: Mapped[int] = mapped_column(BigInteger)
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookEndpoint(BillingBase):
    """An organisation's webhook receiver. The signing secret is stored encrypted (Fernet, key from the
    settings), shown once when created, and never logged."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    secret_encrypted: Mapped[str] = mapped_column(String(500))
    secret_hint: Mapped[str] = mapped_column(String(16))  # the last 4 characters, to tell secrets apart
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(BillingBase):
    """A delivered (2xx) webhook: one row per endpoint and event, so a retry skips those already done."""

    __tablename__ = "webhook_deliveries"

    endpoint_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    delivered_at: Mapped[datetime] = mapped_column(UTCDateTime)
