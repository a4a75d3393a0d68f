"""What the libraries under the services log at DEBUG (SWITCHYARD_LOG_LEVEL=DEBUG) and on errors: no
statement's parameters (key hashes, prompts, emails), on SQLite and PostgreSQL, and no WebSocket frame's
text (the Responses WebSocket mode's prompts), in any line. Before, SWITCHYARD_LOG_LEVEL=DEBUG wrote every
SQLite statement with its parameters (aiosqlite's "executing functools.partial(..., 'SELECT ... WHERE
key_hash = ?', ('<hash>',))", twice per statement), and an IntegrityError logged with its traceback
carried `[parameters: (...)]` at ERROR on both databases (PostgreSQL's DETAIL `Key (...)=(...)` too);
the websockets library uvicorn serves WebSockets with wrote each frame at DEBUG (`< TEXT '{"type":
"response.create", ...' [n bytes]`, its first 75 characters)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from switchyard.common.db import create_engine
from switchyard.common.logs import configure_logging
from tests.support.servers import BackgroundServer

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


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("echo " + await websocket.receive_text())
    await websocket.close()


async def test_no_websocket_frame_reaches_the_logs(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="test", level="DEBUG", json=True)
    try:
        with BackgroundServer(Starlette(routes=[WebSocketRoute("/ws", _echo)])) as server:
            url = server.url.replace("http://", "ws://") + "/ws"
            async with connect(url) as client:
                await client.send('{"type": "response.create", "input": "' + SECRETS[1] + '"}')
                assert SECRETS[1] in await asyncio.wait_for(client.recv(), 10)
    finally:
        logging.getLogger().setLevel(logging.WARNING)
    written = capfd.readouterr()
    assert SECRETS[1] not in written.err + written.out
