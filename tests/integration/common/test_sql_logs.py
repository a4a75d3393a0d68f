"""What the database layer logs, at DEBUG and on errors, on SQLite and PostgreSQL: no statement's
parameters (key hashes, prompts, emails) in any line. Before, SWITCHYARD_LOG_LEVEL=DEBUG wrote every
SQLite statement with its parameters (aiosqlite's "executing functools.partial(..., 'SELECT ... WHERE
key_hash = ?', ('<hash>',))", twice per statement), and an IntegrityError logged with its traceback
carried `[parameters: (...)]` at ERROR on both databases (PostgreSQL's DETAIL `Key (...)=(...)` too)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from switchyard.common.db import create_engine
from switchyard.common.logs import configure_logging

pytestmark = pytest.mark.integration

SECRETS = ("0f3c9a1b2d4e5f60718293a4b5c6d7e8", "tell me about my diagnosis", "alice@example.com")


async def test_no_statement_parameter_reaches_the_logs(
    db_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    configure_logging(service="test", level="DEBUG", json=True)
    log = logging.getLogger("test.sql")
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE secrets (k TEXT PRIMARY KEY, prompt TEXT, email TEXT)"))
            row = {"k": SECRETS[0], "p": SECRETS[1], "e": SECRETS[2]}
            await conn.execute(text("INSERT INTO secrets VALUES (:k, :p, :e)"), row)
            found = await conn.execute(text("SELECT email FROM secrets WHERE k = :k"), {"k": SECRETS[0]})
            assert found.scalar_one() == SECRETS[2]
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                try:
                    await conn.execute(text("INSERT INTO secrets VALUES (:k, :p, :e)"), row)
                except IntegrityError:
                    log.exception("the second insert failed")  # as a handler's error log does
                    raise
    finally:
        await engine.dispose()
        logging.getLogger().setLevel(logging.WARNING)
    written = capfd.readouterr()
    logged = written.err + written.out
    assert "the second insert failed" in logged and "IntegrityError" in logged  # the error itself is kept
    for secret in SECRETS:
        at = logged.find(secret)
        assert at < 0, f"{secret!r} logged: ...{logged[max(0, at - 300) : at + 100]}..."
