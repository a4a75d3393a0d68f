"""`switchyard ledger report --tenant` on a real database: the organisation's id or its name, as the
billing commands take it (README: `make run`'s organisation is named `dev`, its id is random)."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from switchyard.audit.db import migrations
from switchyard.audit.digests import TenantKeys
from switchyard.audit.entries import draft_for
from switchyard.audit.service import append_entries
from switchyard.cli.main import main
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import ChatMessage, ChatRequest, TaskSubmitted
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


async def _submitted(url: str, prompt: str) -> None:
    engine = create_engine(url)
    try:
        sessions = sessionmaker(engine)
        payload = TaskSubmitted(
            task_id="t31",
            tenant_id="acme",
            request=ChatRequest(messages=[ChatMessage(role="user", content=prompt)]),
            submitted_at=datetime.now(UTC),
        )
        event = CloudEvent(id="evt-31", source="switchyard/gateway", type=payload.EVENT_TYPE, data={})
        key = await TenantKeys(sessions).for_digest("acme")
        await append_entries(sessions, drafts=[draft_for(event, payload, key)])
    finally:
        await engine.dispose()


def test_ledger_digest_checks_a_prompt_against_the_tenants_entry(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_seed(sqlite_url))
    asyncio.run(_submitted(sqlite_url, "fire Alice"))  # entry 31
    cli = ["ledger", "digest", "--database-url", sqlite_url, "--tenant", "ACME Inc."]
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("fire Alice\n")  # an editor's final newline is not the prompt's
    assert main([*cli, "--text-file", str(prompt), "--seq", "31"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["matches"], found["algorithm"], found["tenant_id"]) == (True, "hmac-sha256", "acme")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"fire Bob")))
    assert main([*cli, "--text-file", "-", "--seq", "31"]) == 1  # not this prompt
    assert json.loads(capsys.readouterr().out)["matches"] is False
    assert main([*cli, "--text-file", str(prompt)]) == 0
    assert json.loads(capsys.readouterr().out)["digest"] == found["digest"]
    assert main([*cli, "--text-file", str(prompt), "--seq", "3"]) == 2  # entry 3 is globex's
    assert "another tenant" in capsys.readouterr().err
