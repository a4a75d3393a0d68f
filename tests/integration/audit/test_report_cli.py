"""`switchyard ledger report --tenant` on a real database: the organisation's id or its name, as the
billing commands take it (README: `make run`'s organisation is named `dev`, its id is random)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from switchyard.audit.db import migrations
from switchyard.cli.main import main
from switchyard.common.db import create_engine, sessionmaker
from switchyard.gateway.db import migrations as gateway_migrations
from switchyard.gateway.models import Tenant
from tests.support.ledger import fill

pytestmark = pytest.mark.integration


async def _seed(url: str) -> None:
    await migrations().upgrade(url)
    await gateway_migrations().upgrade(url)
    engine = create_engine(url)
    try:
        await fill(sessionmaker(engine), 1, 30)  # acme's and globex's entries
        async with sessionmaker(engine)() as session, session.begin():
            session.add(Tenant(id="acme", name="ACME Inc.", created_at=datetime.now(UTC)))
    finally:
        await engine.dispose()


def test_report_by_name_is_the_organisations(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_seed(sqlite_url))
    period = ["--from", "2026-11-01", "--to", "2026-12-01"]
    cli = ["ledger", "report", "--database-url", sqlite_url, *period]
    assert main([*cli, "--tenant", "ACME Inc."]) == 0
    by_name = json.loads(capsys.readouterr().out)
    assert (by_name["tenant_id"], by_name["entries"]) == ("acme", 20)
    assert main([*cli, "--tenant", "acme"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 20

    assert main([*cli, "--tenant", "globex"]) == 0  # no organisation row: its entries, and a note
    out, err = capsys.readouterr()
    assert json.loads(out)["entries"] == 10 and "no organisation has the id or name 'globex'" in err


def test_inclusion_proof_for_a_tenant_by_name(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_seed(sqlite_url))
    monkeypatch.setenv("SWITCHYARD_AUDIT_SIGNING_KEY", "55" * 32)
    db = ["--database-url", sqlite_url]
    assert main(["ledger", "checkpoint", *db, "--sign-now"]) == 0
    capsys.readouterr()
    proof = ["ledger", "proof", "inclusion", *db, "--seq", "1"]  # entry 1 is acme's
    assert main([*proof, "--tenant", "ACME Inc."]) == 0
    assert json.loads(capsys.readouterr().out)["tenant_id"] == "acme"
    assert main([*proof, "--tenant", "globex"]) != 0
