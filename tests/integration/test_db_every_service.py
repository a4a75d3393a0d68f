"""`switchyard db upgrade`, `db current` and `db downgrade` know every service that keeps tables, the
classifier's opt-in outcome store included: an operator who upgrades with the command (the migrate Job,
compose's `migrate`) gets every table the platform uses, on real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from switchyard.classifier.outcomes import store
from switchyard.common.db import create_engine
from tests.support.db_commands import db_state, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_engine(db_url)
    try:
        yield made
    finally:
        await made.dispose()


async def _features(engine: AsyncEngine) -> None:
    await store.record(
        engine,
        tenant_id="acme",
        task_id="t1",
        vector=np.ones(4, dtype=np.float32),
        embedding_model_sha256="a" * 64,
        features_version="v1",
        now=datetime.now(UTC),
    )


async def test_upgrade_makes_the_outcome_store_and_current_shows_it(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run_cli(capsys, "db", "upgrade", "--database-url", db_url)
    assert code == 0, err
    assert "classifier" in out, out
    state = await db_state(engine)
    assert "other_language" in state["tables"]["classifier_outcome_features"]
    assert state["versions"]["alembic_version_classifier"] == "cl0002"
    await _features(engine)  # the recorder's write works on the schema the command made
    code, out, _ = await run_cli(capsys, "db", "current", "--database-url", db_url)
    assert code == 0
    assert any(line.split()[:3] == ["classifier", "cl0002", "(head)"] for line in out.splitlines()), out


async def test_upgrade_takes_a_store_the_recorder_made_to_its_head(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deployment whose recorder made the store at an earlier release: the command finishes the job."""
    await store.migrations().upgrade(db_url, "cl0001")
    code, out, _ = await run_cli(capsys, "db", "current", "--database-url", db_url)
    assert code == 0 and "classifier cl0001 (head cl0002" in out, out
    assert (await run_cli(capsys, "db", "upgrade", "--database-url", db_url))[0] == 0
    assert (await db_state(engine))["versions"]["alembic_version_classifier"] == "cl0002"


async def test_the_stores_rows_are_guarded_as_the_other_services_are(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await run_cli(capsys, "db", "upgrade", "--database-url", db_url))[0] == 0
    await _features(engine)
    before = await db_state(engine)
    down = ("db", "downgrade", "--service", "classifier", "--to", "base", "--yes", "--database-url", db_url)
    code, out, err = await run_cli(capsys, *down)
    assert code == 2, (out, err)
    assert "classifier_outcome_features (1 row)" in err and "--drop-data" in err, err
    assert await db_state(engine) == before
    code, out, err = await run_cli(capsys, *down, "--drop-data")
    assert code == 0, err
    state = await db_state(engine)
    assert "classifier_outcome_features" not in state["tables"]
    assert state["versions"]["alembic_version_classifier"] is None
    assert (await run_cli(capsys, "db", "upgrade", "--database-url", db_url))[0] == 0
    assert (await db_state(engine))["versions"]["alembic_version_classifier"] == "cl0002"
