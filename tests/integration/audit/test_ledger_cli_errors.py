"""The operator's ledger commands on bad input, on a real SQLite ledger: a file that cannot be written or
read, a period that ends before it starts, a database that is not there. Each is one line on stderr and a
non-zero exit, never a stack trace, and a mistyped database path is not created empty on the way."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from switchyard.audit.db import migrations
from switchyard.cli.main import main
from switchyard.common.db import create_engine, sessionmaker
from tests.support.ledger import fill

pytestmark = pytest.mark.integration


async def _seed(url: str) -> None:
    await migrations().upgrade(url)
    engine = create_engine(url)
    try:
        await fill(sessionmaker(engine), 1, 6)
    finally:
        await engine.dispose()


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_files_that_cannot_be_written_or_read_are_one_line(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_seed(sqlite_url))
    monkeypatch.setenv("SWITCHYARD_AUDIT_SIGNING_KEY", "55" * 32)
    db = ["--database-url", sqlite_url]
    assert main(["ledger", "checkpoint", *db, "--sign-now"]) == 0
    capsys.readouterr()
    nowhere = tmp_path / "no-such-dir" / "out.json"
    for command in (
        ["ledger", "report", *db, "--tenant", "acme", "--from", "2026-01-01", "--to", "2027-01-01"],
        ["ledger", "checkpoint", *db],
        ["ledger", "proof", "inclusion", *db, "--seq", "1"],
    ):
        assert main([*command, "--out", str(nowhere)]) == 2, command  # was FileNotFoundError's traceback
        line = _one_line(capsys.readouterr().err)
        assert str(nowhere) in line and "No such file or directory" in line, line
    assert main(["ledger", "verify", *db, "--checkpoint", str(tmp_path / "saved.json")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(tmp_path / "saved.json") in line and "No such file or directory" in line, line
    # a proof file that cannot be read is the command's misuse (2), not an invalid proof (1)
    for missing, why in (
        (tmp_path / "no-proof.json", "No such file or directory"),
        (tmp_path / "no-archive.jsonl", "No such file or directory"),
        (tmp_path, "Is a directory"),
    ):
        assert main(["ledger", "verify-proof", str(missing)]) == 2, missing
        line = _one_line(capsys.readouterr().err)
        assert str(missing) in line and why in line and "INVALID" not in line, line


def test_a_report_period_that_ends_before_it_starts_is_refused(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed a report of 0 entries, `verification.ok: true`, exit 0: a compliance report that says all
    is well about a period that does not exist."""
    asyncio.run(_seed(sqlite_url))
    report = ["ledger", "report", "--database-url", sqlite_url, "--tenant", "acme"]
    assert main([*report, "--from", "2026-12-08", "--to", "2026-12-01"]) == 2
    out, err = capsys.readouterr()
    assert not out and "--to" in _one_line(err) and "after --from" in err


def test_a_database_that_is_not_there_is_named_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`switchyard ledger verify` with a mistyped SWITCHYARD_VAR_DIR (or --database-url) made the directory
    and an empty database file there, then asked whether `switchyard db upgrade` had run."""
    missing = tmp_path / "typo" / "switchyard.db"
    url = f"sqlite+aiosqlite:///{missing}"
    for command in (
        ["ledger", "verify", "--database-url", url],
        [
            "ledger",
            "report",
            "--database-url",
            url,
            "--tenant",
            "acme",
            "--from",
            "2026-01-01",
            "--to",
            "2027-01-01",
        ],
        ["billing", "usage", "--database-url", url, "--tenant", "acme"],
        [
            "siem",
            "export",
            "--database-url",
            url,
            "--to",
            f"file://{tmp_path / 'siem.jsonl'}",
            "--format",
            "ecs",
        ],
    ):
        assert main(command) == 2, command
        line = _one_line(capsys.readouterr().err)
        assert f"no database at {missing}" in line, line
    assert not (tmp_path / "typo").exists()
    monkeypatch.delenv("SWITCHYARD_DATABASE_URL", raising=False)
    monkeypatch.setenv("SWITCHYARD_VAR_DIR", str(tmp_path / "other-typo"))
    assert main(["ledger", "verify"]) == 2
    assert "SWITCHYARD_VAR_DIR" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "other-typo").exists()


def test_verify_proof_calls_a_malformed_file_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What an outsider runs on files handed to them: a damaged archive (KeyError, AttributeError) was a
    stack trace; it is `proof INVALID: ...`, exit 1."""
    damaged = {
        "header-only.jsonl": '{"format": "switchyard.ledger.archive.v1"}\n',
        "not-objects.jsonl": "[1]\n",
        "entry-not-object.jsonl": '{"format": "switchyard.ledger.archive.v1", "checkpoint": {}}\n[1]\n',
    }
    for name, text in damaged.items():
        (tmp_path / name).write_text(text)
        assert main(["ledger", "verify-proof", str(tmp_path / name)]) == 1, name
        assert _one_line(capsys.readouterr().err).startswith("proof INVALID: "), name


def test_verify_proof_calls_a_verifier_key_it_cannot_parse_misuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --verifier-key says nothing of the proof: it is the command's misuse (one line, exit 2,
    as for a proof file it cannot read, and as `ledger verify` and scripts/verify_ledger_proof.py say it),
    never `proof INVALID` (exit 1), for a proof document and for an archive alike."""
    (tmp_path / "p.json").write_text("{}")
    (tmp_path / "a.jsonl").write_text('{"format": "switchyard.ledger.archive.v1"}\n')
    for path in (tmp_path / "p.json", tmp_path / "a.jsonl"):
        for key in ("garbage", "name+00000000+AAAA", ""):
            assert main(["ledger", "verify-proof", str(path), "--verifier-key", key]) == 2, (path, key)
            line = _one_line(capsys.readouterr().err)
            assert "--verifier-key" in line and "INVALID" not in line, line


def test_bootstrap_before_the_migrations_says_to_run_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`switchyard db bootstrap` run before `switchyard db upgrade` (a deployment's steps swapped) was a
    stack trace of SQLAlchemy's (no such table: tenants); it names the step to run first."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    (tmp_path / "fresh.db").touch()  # there, but never migrated
    assert main(["db", "bootstrap", "--org", "ops", "--email", "ops@example.com", "--database-url", url]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "no such table" in line and "switchyard db upgrade" in line, line
