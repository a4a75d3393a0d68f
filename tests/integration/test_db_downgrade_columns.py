"""`switchyard db downgrade` guards the columns a downgrade drops as it guards tables, on real SQLite and
PostgreSQL: a column holding data (a value that is not NULL, JSON null or the default it was added with)
is not dropped without `--drop-data`; one holding nothing is dropped without asking, as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from switchyard.billing.models import UsageEntry
from switchyard.classifier.outcomes import store
from switchyard.gateway.models import ApiKey
from tests.support.db_commands import db_state, migrated, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated(db_url) as made:
        yield made


def _down(db_url: str, service: str, target: str, *more: str) -> tuple[str, ...]:
    return ("db", "downgrade", "--service", service, "--to", target, *more, "--database-url", db_url)


async def _entry(engine: AsyncEngine, **values: Any) -> None:
    row = {
        "id": "u1",
        "task_id": "t1",
        "event_id": "e1",
        "tenant_id": "acme",
        "model": "m",
        "provider": "p",
        "tier": "fast",
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "cost_usd": Decimal("0.000007"),
        "priced": True,
        "created_at": datetime.now(UTC),
    }
    async with engine.begin() as conn:
        await conn.execute(insert(UsageEntry).values(**{**row, **values}))


async def _bootstrap(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    boot = ("db", "bootstrap", "--org", "Acme", "--email", "ops@acme.test", "--database-url", db_url)
    assert (await run_cli(capsys, *boot))[0] == 0


async def test_a_keys_ancestors_are_not_dropped_unasked(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """gw0008's downgrade drops `api_keys.ancestors`: a minted key's spend would stop counting against its
    minter's budget. The bootstrap key's (JSON null: minted by no key) holds nothing and goes unasked."""
    await _bootstrap(db_url, capsys)
    code, out, err = await run_cli(capsys, *_down(db_url, "gateway", "gw0007"))
    assert code == 0 and "drops api_keys.ancestors (0 rows with a value)" in out, (out, err)
    async with engine.begin() as conn:
        await conn.execute(update(ApiKey).values(ancestors=["key_parent"]))
    before = await db_state(engine)
    for words in ((), ("--yes",)):
        code, out, err = await run_cli(capsys, *_down(db_url, "gateway", "gw0007", *words))
        assert code == 2, (out, err)
        assert "api_keys.ancestors (1 row with a value)" in err and "--drop-data" in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert await db_state(engine) == before
    code, out, err = await run_cli(capsys, *_down(db_url, "gateway", "gw0007", "--yes", "--drop-data"))
    assert code == 0, err
    state = await db_state(engine)
    assert state["versions"]["alembic_version_gateway"] == "gw0007"
    assert "ancestors" not in state["tables"]["api_keys"]


async def test_a_keys_policy_and_restricted_scopes_are_guarded(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _bootstrap(db_url, capsys)
    async with engine.begin() as conn:
        await conn.execute(update(ApiKey).values(models=["gpt-4o-mini"], rpm_limit=10))
    code, _, err = await run_cli(capsys, *_down(db_url, "gateway", "gw0002", "--yes"))
    assert code == 2 and "api_keys.models (1 row with a value)" in err, err
    assert "api_keys.rpm_limit (1 row with a value)" in err and "api_keys.tpm_limit" not in err, err
    async with engine.begin() as conn:
        await conn.execute(update(ApiKey).values(models=None, rpm_limit=None))
    code, out, err = await run_cli(capsys, *_down(db_url, "gateway", "gw0002", "--yes"))
    assert code == 0, (out, err)
    async with engine.begin() as conn:
        await conn.execute(update(ApiKey).values(scopes="inference"))
    code, _, err = await run_cli(capsys, *_down(db_url, "gateway", "gw0001", "--yes"))
    assert code == 2 and "api_keys.scopes (1 row with a value)" in err, err  # and users: rows too
    assert "users (1 row)" in err, err


async def test_billings_counts_are_guarded_and_their_defaults_are_not(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry with no cache tokens, not estimated, no policy version and no key: the columns bi0004-bi0009
    added hold nothing, so taking billing to bi0003 loses nothing and goes ahead; a cache count does not."""
    await _entry(engine, cache_read_tokens=5, usage_estimated=True)
    before = await db_state(engine)
    code, _, err = await run_cli(capsys, *_down(db_url, "billing", "bi0003", "--yes"))
    assert code == 2, err
    assert "usage_entries.cache_read_tokens (1 row with a value)" in err, err
    assert "usage_entries.usage_estimated (1 row with a value)" in err, err
    assert "cache_write_tokens" not in err and "policy_version" not in err, err
    assert await db_state(engine) == before
    async with engine.begin() as conn:
        await conn.execute(update(UsageEntry).values(cache_read_tokens=0, usage_estimated=False))
    code, _, err = await run_cli(capsys, *_down(db_url, "billing", "bi0003", "--yes"))
    assert code == 0, err
    state = await db_state(engine)
    assert state["versions"]["alembic_version_billing"] == "bi0003"
    assert "cache_read_tokens" not in state["tables"]["usage_entries"]


async def test_a_charges_key_and_policy_version_are_guarded(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _entry(engine, api_key_id="key_1", policy_version="2026-12")
    code, _, err = await run_cli(capsys, *_down(db_url, "billing", "bi0006", "--yes"))
    assert code == 2, err
    assert "usage_entries.api_key_id (1 row with a value)" in err, err
    assert "usage_entries.policy_version (1 row with a value)" in err, err


async def test_the_classifiers_language_flag_is_guarded(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for task, other in (("t1", False), ("t2", True)):
        await store.record(
            engine,
            tenant_id="acme",
            task_id=task,
            vector=np.ones(4, dtype=np.float32),
            embedding_model_sha256="a" * 64,
            features_version="v1",
            other_language=other,
        )
    code, _, err = await run_cli(capsys, *_down(db_url, "classifier", "cl0001", "--yes"))
    assert code == 2 and "classifier_outcome_features.other_language (1 row with a value)" in err, err
    code, _, err = await run_cli(capsys, *_down(db_url, "classifier", "cl0001", "--yes", "--drop-data"))
    assert code == 0, err
