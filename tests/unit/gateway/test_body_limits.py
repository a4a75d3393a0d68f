"""A body over its limit is a 413 that names the setting that sets that limit, or none where none does (it
named SWITCHYARD_MAX_BODY_BYTES whatever limit its caller passed: a message batch's 256 MB, say)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient

from switchyard.gateway import errors
from switchyard.gateway.bodies import read_body

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    errors.install(app)

    @app.post("/fixed")
    async def fixed(request: Request) -> Response:
        return Response(await read_body(request, limit=10, setting=None))

    @app.post("/files")
    async def files(request: Request) -> Response:
        return Response(await read_body(request, limit=10, setting="SWITCHYARD_FILES_MAX_BYTES"))

    return TestClient(app)


def _chunked() -> Iterator[bytes]:  # no Content-Length: the limit is met while reading
    yield b"0123456789"
    yield b"ab"


@pytest.mark.parametrize("body", [b"0123456789ab", _chunked], ids=["declared", "streamed"])
def test_the_413_names_the_setting_that_applies_or_none(client: TestClient, body: object) -> None:
    content = body() if callable(body) else body
    fixed = client.post("/fixed", content=content)  # type: ignore[arg-type]
    error = fixed.json()["error"]
    assert (fixed.status_code, error["code"]) == (413, "request_too_large")
    assert "exceeds the limit of 10 bytes" in error["message"] and "SWITCHYARD" not in error["message"]
    content = body() if callable(body) else body
    files = client.post("/files", content=content)  # type: ignore[arg-type]
    assert files.json()["error"]["message"].endswith(
        "exceeds the limit of 10 bytes (SWITCHYARD_FILES_MAX_BYTES)"
    )
    assert client.post("/fixed", content=b"0123456789").content == b"0123456789"  # at the limit: taken
