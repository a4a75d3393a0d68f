"""`switchyard db downgrade` and `db current` on real SQLite and PostgreSQL: a dry run by default, one step
down and up again with the rows kept, and one-line refusals (exit 2) that change nothing: an unknown
service or revision, a target above the current one, and the audit ledger's tables dropped with their rows
unless `--drop-data` says so, and so are billing's charges and the gateway's organisations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Insert, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from switchyard.audit.db import migrations as audit_migrations
from switchyard.audit.models import DigestKey
from switchyard.audit.service import append_entries
from switchyard.audit.verify import verify_ledger
from switchyard.billing.models import UsageEntry
from switchyard.cli import db_downgrade
from switchyard.common.db import create_engine, sessionmaker
from switchyard.gateway.db import migrations as gateway_migrations
from tests.support.db_commands import db_state as _state
from tests.support.db_commands import migrated
from tests.support.db_commands import run_cli as _run
from tests.support.ledger import draft

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated(db_url) as made:
        yield made


def _charge(entry_id: str, task_id: str, tenant_id: str) -> Insert:
    """A usage entry of billing's (what a downgrade must not lose)."""
    return insert(UsageEntry).values(
        id=entry_id,
        task_id=task_id,
        event_id=f"e-{entry_id}",
        tenant_id=tenant_id,
        model="m",
        provider="p",
        tier="fast",
        prompt_tokens=3,
        completion_tokens=4,
        cost_usd=Decimal("0.000007"),
        priced=True,
        created_at=datetime.now(UTC),
    )


async def _digest_key(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(DigestKey).values(tenant_id="acme", secret=b"k" * 32, created_at=datetime.now(UTC))
        )


async def test_current_shows_each_services_revision_and_head(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await audit_migrations().downgrade(db_url, "au0004")
    code, out, _ = await _run(capsys, "db", "current", "--database-url", db_url)
    assert code == 0
    lines = out.splitlines()
    assert any(line.split()[:3] == ["gateway", "gw0008", "(head)"] for line in lines), out
    assert any(line.split()[:3] == ["billing", "bi0011", "(head)"] for line in lines), out
    assert any(line.split()[:4] == ["audit", "au0004", "(head", "au0007,"] for line in lines), out
    code, out, _ = await _run(
        capsys, "db", "downgrade", "--service", "audit", "--to", "au0004", "--database-url", db_url
    )
    assert code == 0 and "at au0004 already: nothing to do" in out


async def test_a_service_not_migrated_shows_none_and_has_nothing_to_downgrade(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await gateway_migrations().upgrade(db_url)
    code, out, _ = await _run(capsys, "db", "current", "--database-url", db_url)
    assert code == 0 and "billing none (head bi0011" in out and "gateway gw0008 (head)" in out, out
    code, _, err = await _run(
        capsys, "db", "downgrade", "--service", "billing", "--to", "bi0001", "--yes", "--database-url", db_url
    )
    assert code == 2 and "billing has no schema in this database" in err, err


async def test_a_dry_run_names_every_step_and_changes_nothing(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = await _state(engine)
    code, out, err = await _run(
        capsys, "db", "downgrade", "--service", "billing", "--to", "bi0008", "--database-url", db_url
    )
    assert code == 0, err
    assert "billing: bi0011 -> bi0008" in out
    assert "bi0011 -> bi0010" in out and "bi0010 -> bi0009" in out and "bi0009 -> bi0008" in out
    assert "per-key daily rows" in out.lower() or "usage_daily_keys" in out  # each step's own title
    assert "--yes" in out
    assert await _state(engine) == before


async def test_one_step_down_and_up_again_keeps_the_ledger(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = sessionmaker(engine)
    await append_entries(sessions, drafts=[draft(i) for i in range(1, 9)])
    before = await _state(engine)

    code, _, err = await _run(
        capsys, "db", "downgrade", "--service", "audit", "--to", "au0004", "--yes", "--database-url", db_url
    )
    assert code == 0, err
    down = await _state(engine)
    assert down["versions"]["alembic_version_audit"] == "au0004"
    assert "ledger_digest_keys" not in down["tables"]
    assert down["entries"] == before["entries"]
    assert (await verify_ledger(sessions)).ok

    assert (await _run(capsys, "db", "upgrade", "--database-url", db_url))[0] == 0
    up = await _state(engine)
    assert up == before
    await append_entries(sessions, drafts=[draft(i) for i in range(9, 12)])
    report = await verify_ledger(sessions)
    assert report.ok and report.entries == 11


async def test_one_step_down_and_up_again_keeps_the_keys(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gateway's gw0008 drops a column on the way down (SQLite rebuilds the table): the keys stay."""
    assert (
        await _run(
            capsys, "db", "bootstrap", "--org", "Acme", "--email", "ops@acme.test", "--database-url", db_url
        )
    )[0] == 0

    async def keys() -> list[Any]:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT id, tenant_id, key_hash FROM api_keys ORDER BY id"))
            return [tuple(r) for r in rows]

    before = await keys()
    assert len(before) == 1
    code, _, err = await _run(
        capsys, "db", "downgrade", "--service", "gateway", "--to", "gw0007", "--yes", "--database-url", db_url
    )
    assert code == 0, err
    assert (await _state(engine))["versions"]["alembic_version_gateway"] == "gw0007"
    assert await keys() == before
    assert (await _run(capsys, "db", "upgrade", "--database-url", db_url))[0] == 0
    assert (await _state(engine))["versions"]["alembic_version_gateway"] == "gw0008"
    assert await keys() == before


@pytest.mark.parametrize(
    ("words", "said"),
    [
        (["--service", "ledger", "--to", "au0004"], "no service ledger"),
        (["--service", "audit", "--to", "gw0007"], "no revision gw0007 of audit"),
        (["--service", "audit", "--to", "au9"], "no revision au9 of audit"),
        (["--service", "audit", "--to", "au0001"], "merkle_nodes ("),
        (["--service", "audit", "--to", "au0001", "--yes"], "ledger_digest_keys (1 row)"),
        (["--service", "audit", "--to", "base", "--yes"], "ledger_entries (8 rows)"),
        (["--service", "audit", "--to", "au0004", "--yes"], "ledger_digest_keys (1 row)"),
    ],
)
async def test_a_refusal_is_one_line_and_changes_nothing(
    words: list[str], said: str, engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await append_entries(sessionmaker(engine), drafts=[draft(i) for i in range(1, 9)])
    await _digest_key(engine)
    before = await _state(engine)
    code, out, err = await _run(capsys, "db", "downgrade", *words, "--database-url", db_url)
    assert code == 2, (out, err)
    assert said in err and len(err.strip().splitlines()) == 1, err
    assert await _state(engine) == before


async def test_a_target_above_the_current_revision_is_refused(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await audit_migrations().downgrade(db_url, "au0003")
    before = await _state(engine)
    code, _, err = await _run(
        capsys, "db", "downgrade", "--service", "audit", "--to", "au0005", "--yes", "--database-url", db_url
    )
    assert code == 2
    assert "above" in err and "au0003" in err and len(err.strip().splitlines()) == 1, err
    assert await _state(engine) == before


async def test_drop_data_lets_the_ledgers_tables_go(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await append_entries(sessionmaker(engine), drafts=[draft(i) for i in range(1, 4)])
    await _digest_key(engine)
    code, out, err = await _run(
        capsys,
        *("db", "downgrade", "--service", "audit", "--to", "au0004", "--yes", "--drop-data"),
        *("--database-url", db_url),
    )
    assert code == 0, err
    assert "ledger_digest_keys (1 row)" in out
    state = await _state(engine)
    assert state["versions"]["alembic_version_audit"] == "au0004" and len(state["entries"]) == 3


async def test_a_row_written_after_the_steps_were_shown_still_refuses_it(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks run again in the downgrade's own transaction: a digest key made between the first look
    (no rows: nothing to refuse) and the downgrade keeps its table."""
    first_look = db_downgrade._look

    async def then_a_key_is_made(*args: Any) -> Any:
        found = await first_look(*args)
        writer = create_engine(db_url)
        try:
            await _digest_key(writer)
        finally:
            await writer.dispose()
        return found

    monkeypatch.setattr(db_downgrade, "_look", then_a_key_is_made)
    code, out, err = await _run(
        capsys, "db", "downgrade", "--service", "audit", "--to", "au0004", "--yes", "--database-url", db_url
    )
    assert code == 2, (out, err)
    assert "ledger_digest_keys (1 row)" in err and "drops ledger_digest_keys (0 rows)" in out
    state = await _state(engine)
    assert state["versions"]["alembic_version_audit"] == "au0007" and "ledger_digest_keys" in state["tables"]


async def test_the_organisations_and_the_charges_are_guarded_as_the_ledger_is(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Billing's usage entries are what the invoices are made of, and the gateway's organisations, users
    and keys who may call: a downgrade that drops their tables with rows in them is refused unless
    --drop-data says so, as the ledger's is."""
    boot = ("db", "bootstrap", "--org", "Acme", "--email", "ops@acme.test", "--database-url", db_url)
    assert (await _run(capsys, *boot))[0] == 0
    async with engine.begin() as conn:
        await conn.execute(_charge("u1", "t1", "acme"))
    before = await _state(engine)
    for service, target, said in (
        ("gateway", "gw0001", "users (1 row)"),
        ("gateway", "base", "api_keys (1 row)"),
        ("billing", "base", "usage_entries (1 row)"),
    ):
        code, out, err = await _run(
            capsys, "db", "downgrade", "--service", service, "--to", target, "--yes", "--database-url", db_url
        )
        assert code == 2, (out, err)
        assert said in err and "--drop-data" in err and len(err.strip().splitlines()) == 1, err
    assert await _state(engine) == before
    code, out, err = await _run(
        capsys, "db", "downgrade", "--service", "billing", "--to", "bi0009", "--yes", "--database-url", db_url
    )
    assert code == 0, err  # usage_daily_keys is empty: nothing is lost, nothing to refuse


async def test_tasks_of_one_id_in_two_organisations_refuse_the_downgrade_to_one_charge_per_id(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """bi0011 charges a task id once per organisation; bi0010's schema once in all, so it cannot hold both
    of two organisations' `job-1`: refused in one line, naming the id, with nothing changed."""
    async with engine.begin() as conn:
        for n, tenant in enumerate(("acme", "globex")):
            await conn.execute(_charge(f"u{n}", "job-1", tenant))
    before = await _state(engine)
    down = ("db", "downgrade", "--service", "billing", "--to", "bi0010", "--yes", "--database-url", db_url)
    code, out, err = await _run(capsys, *down)
    assert code == 2, (out, err)
    assert "job-1" in err and "organisations" in err and len(err.strip().splitlines()) == 1, err
    assert await _state(engine) == before
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM usage_entries WHERE tenant_id = 'globex'"))
    code, out, err = await _run(capsys, *down)
    assert code == 0, err
    code, out, err = await _run(capsys, "db", "upgrade", "--database-url", db_url)
    assert code == 0, err


async def test_the_entries_provenance_is_guarded_as_the_ledger_is(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """au0006's downgrade drops `ledger_entries.provenance`, inside the hashes of the entries that have one:
    refused while any has, changing nothing, and the ledger still verifies."""
    came = {"subject": "switchyard.task.routed", "by": ["service:router"]}
    drafts = [draft(1), *(draft(i, provenance=came) for i in (2, 3))]
    await append_entries(sessionmaker(engine), drafts=drafts)
    before = await _state(engine)
    code, out, err = await _run(
        capsys, "db", "downgrade", "--service", "audit", "--to", "au0005", "--yes", "--database-url", db_url
    )
    assert code == 2, (out, err)
    assert "ledger_entries.provenance (2 rows with a value)" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert await _state(engine) == before
    assert (await verify_ledger(sessionmaker(engine))).ok


async def test_events_of_one_id_in_two_organisations_refuse_the_downgrade_to_one_entry_per_id(
    engine: AsyncEngine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """au0007 records an event id once per organisation; au0006's schema once in all, and the ledger is
    append-only: refused in one line, naming the id, with nothing changed and the ledger verifying."""
    await append_entries(sessionmaker(engine), drafts=[draft(1), draft(1, tenant="globex")])
    before = await _state(engine)
    code, out, err = await _run(
        capsys, "db", "downgrade", "--service", "audit", "--to", "au0006", "--yes", "--database-url", db_url
    )
    assert code == 2, (out, err)
    assert "evt-000001" in err and "organisations" in err and len(err.strip().splitlines()) == 1, err
    assert await _state(engine) == before
    assert (await verify_ledger(sessionmaker(engine))).ok
