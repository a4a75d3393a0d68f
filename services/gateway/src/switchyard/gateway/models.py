"""The gateway's tables: organisations (tenants), their users, and API keys (stored as the SHA-256 of the
key, never the key)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, MetaData, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from switchyard.common.db import UTCDateTime
from switchyard.gateway.key_policy import KeyPolicy


class GatewayBase(DeclarativeBase):
    metadata = MetaData()


class Tenant(GatewayBase):
    """An organisation. Every read of the admin API is scoped to the caller's tenant."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    plan: Mapped[str] = mapped_column(String(32), default="free")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The operator's own organisation: its admins may create other organisations and set the throttle.
    platform: Mapped[bool] = mapped_column(Boolean, default=False)
    monthly_budget_usd: Mapped[float | None] = mapped_column(Float)
    # When it was erased (`switchyard org erase`): its tasks are refused on the bus (the tenant registry).
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class User(GatewayBase):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"),
        Index("uq_users_oidc_identity", "oidc_issuer", "oidc_subject", unique=True),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    # The user's plan sets the daily budget; None: the organisation's plan.
    plan: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The identity-provider account (OIDC `iss` and `sub`) the user is bound to since their first single
    # sign-on, matched by email that once (access/oidc.py); None: not yet, or unlinked by an admin.
    oidc_issuer: Mapped[str | None] = mapped_column(String(500))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))


class ApiKey(GatewayBase):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    user_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Space-separated scopes; the effective ones are these intersected with the user's role.
    scopes: Mapped[str] = mapped_column(String(200), default="inference")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rotated_to: Mapped[str | None] = mapped_column(String(64))
    # The key's own policy (key_policy.py); all null: it has none.
    models: Mapped[list[str] | None] = mapped_column(JSON)
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    max_budget_usd: Mapped[float | None] = mapped_column(Float)
    budget_duration: Mapped[str | None] = mapped_column(String(8))
    # The first key of its rotations: its counters (budget, limits) are kept under that id, so a rotation
    # does not start them afresh; None: this key's own (`counts_as`).
    lineage_id: Mapped[str | None] = mapped_column(String(64))
    # The keys that minted it, by their lineages' ids (`counts_as`), nearest first: its spend counts
    # against their budgets and rate limits too (`Principal.ancestor_policies`); None: no key minted it.
    ancestors: Mapped[list[str] | None] = mapped_column(JSON)

    POLICY = ("models", "rpm_limit", "tpm_limit", "max_budget_usd", "budget_duration")

    def policy(self) -> KeyPolicy | None:
        return KeyPolicy.of(**{name: getattr(self, name) for name in self.POLICY})

    def policy_columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.POLICY}

    @property
    def counts_as(self) -> str:
        """The id the key's own counters are kept under: its lineage's (`Principal.counts_as`)."""
        return self.lineage_id or self.id
