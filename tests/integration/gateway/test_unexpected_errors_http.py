"""An unexpected error (a bug) is answered with the house's 500 (error body, request id) and the client's
connection stays open for its next request: Starlette's last-resort handler re-raises after answering, and
uvicorn then closed the connection, so a client's next request on it (a pooled keep-alive connection) was
reset. Real uvicorn on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from switchyard.cli.processes import free_port
from switchyard.gateway import errors
from switchyard.gateway.middleware import RequestContext

pytestmark = pytest.mark.integration


def _app() -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.add_middleware(RequestContext)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/fine")
    async def fine() -> dict[str, bool]:
        return {"ok": True}

    return app


@contextlib.asynccontextmanager
async def _serving() -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_app(), host="127.0.0.1", port=port, log_level="critical"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, dict[str, str], bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def test_a_500_keeps_the_connection_open_and_says_its_request_id() -> None:
    async with _serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(2):  # one connection: the second request is read after the first one's 500
                status, headers, body = await _exchange(reader, writer, "/boom")
                error = orjson.loads(body)["error"]
                assert status == 500 and error["type"] == "api_error", body
                assert error["request_id"] == headers["x-request-id"] and "a bug" not in body.decode()
            status, _, body = await _exchange(reader, writer, "/fine")
            assert (status, orjson.loads(body)) == (200, {"ok": True})
        finally:
            writer.close()
