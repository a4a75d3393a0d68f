"""The opt-in outcome store on SQLite and PostgreSQL: migration, idempotent writes, filters, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from switchyard.classifier.outcomes import store
from switchyard.common.db import create_engine

pytestmark = pytest.mark.integration


async def test_record_load_and_purge(db_url: str) -> None:
    await store.migrations().upgrade(db_url)
    engine = create_engine(db_url)
    now = datetime.now(UTC)
    try:
        v = np.arange(5, dtype=np.float32)
        common = {"embedding_model_sha256": "m1", "features_version": "lex-v1"}
        await store.record(
            engine, tenant_id="acme", task_id="t1", vector=v, now=now - timedelta(days=40), **common
        )
        await store.record(
            engine, tenant_id="acme", task_id="t1", vector=v * 0, now=now, **common
        )  # redelivery
        await store.record(
            engine, tenant_id="acme", task_id="t2", vector=v + 1, now=now, other_language=True, **common
        )
        await store.record(engine, tenant_id="other", task_id="t1", vector=v, now=now, **common)
        await store.record(
            engine,
            tenant_id="acme",
            task_id="t3",
            vector=v,
            now=now,
            embedding_model_sha256="m2",
            features_version="lex-v1",
        )
        got = await store.load(engine, embedding_model_sha256="m1", features_version="lex-v1")
        assert set(got) == {("acme", "t1"), ("acme", "t2"), ("other", "t1")}
        assert np.array_equal(got[("acme", "t1")].vector, v)  # the first write stays
        assert got[("acme", "t2")].other_language and not got[("acme", "t1")].other_language
        only = await store.load(
            engine, embedding_model_sha256="m1", features_version="lex-v1", tenants=["other"]
        )
        assert set(only) == {("other", "t1")}
        assert await store.purge(engine, retention=timedelta(days=30), now=now) == 1
        got = await store.load(engine, embedding_model_sha256="m1", features_version="lex-v1")
        assert set(got) == {("acme", "t2"), ("other", "t1")}
    finally:
        await engine.dispose()
