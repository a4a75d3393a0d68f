"""How a bus error reaches a client: a message larger than the bus carries is the request's fault (413,
not retried), the bus reconnecting is not (503, retry)."""

from __future__ import annotations

import nats.errors
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from switchyard.gateway import errors

pytestmark = pytest.mark.unit


def test_max_payload_is_a_413_and_the_bus_reconnecting_a_503() -> None:
    app = FastAPI()
    errors.install(app)

    @app.post("/v1/chat/completions")
    async def too_large() -> None:
        raise nats.errors.MaxPayloadError

    @app.post("/v1/messages")
    async def reconnecting() -> None:
        raise nats.errors.ConnectionReconnectingError

    client = TestClient(app)
    large = client.post("/v1/chat/completions")
    assert large.status_code == 413
    assert large.json()["error"]["code"] == "bus_max_payload_exceeded"
    assert "SWITCHYARD_MAX_BODY_BYTES" in large.json()["error"]["message"]
    busy = client.post("/v1/messages")
    assert (busy.status_code, busy.json()["error"]["code"]) == (503, "bus_unavailable")
    assert busy.headers["retry-after"] == "1" and "retry-after" not in large.headers
    assert busy.headers["x-should-retry"] == "true"  # the bus is back in a moment: the SDKs may retry
