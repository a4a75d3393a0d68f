"""Splunk HEC export against a local collector with the documented ack flow (busy, too large, lost acks,
bad token), and JSON Lines (ECS) files: every entry delivered, intact, and the position saved."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit.db import migrations
from switchyard.audit.export import positions
from switchyard.audit.export.config import ExportSettings
from switchyard.audit.export.sinks import SinkFatal
from switchyard.cli.main import main
from switchyard.cli.siem_cmd import export_once
from switchyard.common.db import create_engine, sessionmaker
from tests.support.fake_hec import FakeHec
from tests.support.ledger import fill, rows

pytestmark = pytest.mark.integration

Sessions = async_sessionmaker[AsyncSession]
ENTRIES = 1200


@pytest.fixture
async def ledger(sqlite_url: str) -> AsyncIterator[Sessions]:
    await migrations().upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        sessions = sessionmaker(engine)
        await fill(sessions, 1, ENTRIES, big_every=401)
        yield sessions
    finally:
        await engine.dispose()


def _details_ok(sent: object, stored: str) -> bool:
    if isinstance(sent, dict) and sent.get("truncated") is True:
        return len(stored) > 60_000
    return sent == orjson.loads(stored)


async def test_hec_with_acks_busy_too_large_and_lost_acks(ledger: Sessions, sqlite_url: str) -> None:
    with FakeHec(max_content_length=200_000, busy_next=2, lose_next=1) as hec:
        settings = ExportSettings(
            database_url=sqlite_url, siem_hec_token=SecretStr(hec.state.token), siem_hec_ack_timeout_s=1.5
        )
        progress = await export_once(settings, hec.url, "ocsf", from_seq=None, name="splunk")
        assert progress.position == ENTRIES and progress.reconnects >= 2  # busy twice, one ack never came
        assert {503, 413, 200} <= set(hec.state.statuses)
        stored = await rows(ledger)
        seen: set[int] = set()
        for event in hec.state.indexed:
            ocsf = event["event"]
            seq = ocsf["metadata"]["sequence"]
            row = stored[seq]
            assert event["fields"] == {"seq": seq, "tenant": row.tenant_id, "event_id": row.event_id}
            assert event["sourcetype"] == "switchyard:ocsf"
            assert (ocsf["class_uid"], ocsf["category_uid"], ocsf["type_uid"] // 100) == (6003, 6, 6003)
            assert ocsf["metadata"]["uid"] == row.event_id and ocsf["metadata"]["tenant_uid"] == row.tenant_id
            assert ocsf["api"]["operation"] == row.action and ocsf["actor"]["user"]["name"] == row.actor
            assert ocsf["status_id"] == (2 if row.outcome == "failure" else 1)
            assert ocsf["unmapped"]["entry_hash"] == row.entry_hash
            assert _details_ok(ocsf["unmapped"]["details"], row.details)
            seen.add(seq)
        assert seen == set(range(1, ENTRIES + 1))
        assert await positions.load(ledger, "splunk") == ENTRIES
        # A refused token stops the exporter with Splunk's own words, and moves nothing.
        wrong = ExportSettings(database_url=sqlite_url, siem_hec_token=SecretStr("nope"))
        with pytest.raises(SinkFatal, match="Invalid token"):
            await export_once(wrong, hec.url, "ocsf", from_seq=1, name="splunk-wrong")
        assert await positions.load(ledger, "splunk-wrong") == 0


async def test_ecs_json_lines_file_resumes_from_its_position(
    ledger: Sessions, sqlite_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "siem" / "ledger.ecs.jsonl"
    settings = ExportSettings(database_url=sqlite_url)
    first = await export_once(settings, f"file://{out}", "ecs", from_seq=None, name="file")
    assert first.position == ENTRIES
    await fill(ledger, ENTRIES + 1, ENTRIES + 50)
    again = await export_once(settings, f"file://{out}", "ecs", from_seq=None, name="file")
    assert again.position == ENTRIES + 50
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [d["event"]["sequence"] for d in lines] == list(range(1, ENTRIES + 51))  # no gap, no duplicate
    stored = await rows(ledger)
    for doc in lines[::37]:
        row = stored[doc["event"]["sequence"]]
        assert doc["event"]["id"] == row.event_id and doc["event"]["action"] == row.action
        assert doc["event"]["outcome"] == row.outcome and doc["organization"]["id"] == row.tenant_id
        assert doc["ecs"]["version"] and doc["user"]["name"] == row.actor
        assert _details_ok(doc["switchyard"]["ledger"]["details"], row.details)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_one_off_export_gives_up_on_a_destination_it_cannot_reach(
    ledger: Sessions, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`switchyard siem export --to tcp://host:port` to a port where nothing listens (a typo, a SIEM down)
    retried silently for ever; it stops after a few attempts, saying what failed and where it stands."""
    port = _closed_port()
    started = time.monotonic()
    code = await asyncio.to_thread(
        main,
        [
            "siem",
            "export",
            "--database-url",
            sqlite_url,
            "--to",
            f"tcp://127.0.0.1:{port}",
            "--format",
            "cef",
        ],
    )
    assert code == 1 and time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert f"cannot deliver to tcp://127.0.0.1:{port}" in err and "ConnectionRefused" in err, err
    assert "nothing delivered" in err and "Traceback" not in err


async def test_a_one_off_export_from_past_the_ledgers_end_says_so(
    ledger: Sessions, sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--from-seq` past the last entry waited for ever for entries that were not there."""
    out = tmp_path / "past.jsonl"
    cli = ["siem", "export", "--database-url", sqlite_url, "--to", f"file://{out}", "--format", "ecs"]
    code = await asyncio.wait_for(asyncio.to_thread(main, [*cli, "--from-seq", str(ENTRIES + 100)]), 30)
    assert code == 0
    said = capsys.readouterr().out
    assert f"nothing to export: the ledger ends at seq {ENTRIES}" in said, said
    assert not out.exists() or out.read_bytes() == b""
