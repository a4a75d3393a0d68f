"""The opt-in outcome store: features of classified tasks, per tenant, kept for a retention period.

Only tenants listed in `classifier_outcome_tenants` (or every tenant with "*") are recorded. What is kept is
the heads' input (the MiniLM embedding and the lexical features), never the prompt: enough to retrain the
heads, useless for reading what was asked. Rows older than the retention period are deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from switchyard.classifier import db
from switchyard.classifier.outcomes.models import OutcomeFeatures
from switchyard.common.db import Migrations, is_sqlite


def migrations() -> Migrations:
    return db.migrations()


@dataclass(frozen=True, slots=True)
class Consent:
    """Which tenants opted in: a set of tenant ids, or every tenant."""

    tenants: frozenset[str]

    def covers(self, tenant_id: str) -> bool:
        return "*" in self.tenants or tenant_id in self.tenants


@dataclass(frozen=True, slots=True)
class StoredFeatures:
    tenant_id: str
    task_id: str
    vector: np.ndarray
    recorded_at: datetime
    other_language: bool = False


async def record(
    engine: AsyncEngine,
    *,
    tenant_id: str,
    task_id: str,
    vector: np.ndarray,
    embedding_model_sha256: str,
    features_version: str,
    other_language: bool = False,
    now: datetime | None = None,
) -> None:
    """Stores one task's features once (a redelivered event changes nothing)."""
    values = {
        "tenant_id": tenant_id,
        "task_id": task_id,
        "embedding_model_sha256": embedding_model_sha256,
        "features_version": features_version,
        "vector": np.asarray(vector, dtype="<f4").tobytes(),
        "other_language": other_language,
        "recorded_at": now or datetime.now(UTC),
    }
    insert = sqlite_insert if is_sqlite(str(engine.url)) else pg_insert
    stmt = insert(OutcomeFeatures).values(**values).on_conflict_do_nothing()
    async with engine.begin() as conn:
        await conn.execute(stmt)


async def load(
    engine: AsyncEngine,
    *,
    embedding_model_sha256: str,
    features_version: str,
    tenants: Iterable[str] | None = None,
) -> dict[tuple[str, str], StoredFeatures]:
    """Features made by this embedding model and feature version, by (tenant, task id)."""
    stmt = select(OutcomeFeatures).where(
        OutcomeFeatures.embedding_model_sha256 == embedding_model_sha256,
        OutcomeFeatures.features_version == features_version,
    )
    if tenants is not None:
        stmt = stmt.where(OutcomeFeatures.tenant_id.in_(list(tenants)))
    out = {}
    async with engine.connect() as conn:
        for row in (await conn.execute(stmt)).mappings():
            out[(row["tenant_id"], row["task_id"])] = StoredFeatures(
                tenant_id=row["tenant_id"],
                task_id=row["task_id"],
                vector=np.frombuffer(row["vector"], dtype="<f4").astype(np.float32),
                recorded_at=row["recorded_at"],
                other_language=bool(row["other_language"]),
            )
    return out


async def forget_tenant(engine: AsyncEngine, tenant_id: str) -> int:
    """Deletes every row of one organisation (its erasure); returns how many."""
    async with engine.begin() as conn:
        result = await conn.execute(delete(OutcomeFeatures).where(OutcomeFeatures.tenant_id == tenant_id))
    return int(result.rowcount or 0)


async def purge(engine: AsyncEngine, *, retention: timedelta, now: datetime | None = None) -> int:
    """Deletes rows older than the retention period; returns how many."""
    cutoff = (now or datetime.now(UTC)) - retention
    async with engine.begin() as conn:
        result = await conn.execute(delete(OutcomeFeatures).where(OutcomeFeatures.recorded_at < cutoff))
    return int(result.rowcount or 0)
