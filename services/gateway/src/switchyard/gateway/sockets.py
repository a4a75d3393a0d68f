"""The Responses WebSocket connections a replica holds open, counted per API key: each may hold a
response of megabytes in memory (`stored_responses/recent.py`) for up to an hour, so one key may open
SWITCHYARD_RESPONSES_WS_PER_KEY of them at once; past it, the handshake is refused with 429."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket

from switchyard.gateway.errors import APIError

SETTING = "SWITCHYARD_RESPONSES_WS_PER_KEY"
# the handshake's headers a response's request does not repeat (its own body's are set)
HANDSHAKE_ONLY = frozenset(
    {
        b"connection",
        b"upgrade",
        b"content-length",
        b"content-type",
        b"transfer-encoding",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
    }
)


class TooManySockets(APIError):
    status = 429
    type = "rate_limit_error"
    code = "too_many_websocket_connections"


@dataclass
class Sockets:
    """Open connections per API key id (a key with none is not listed)."""

    open: dict[str, int] = field(default_factory=dict)

    def take(self, key_id: str, *, limit: int) -> None:
        """One more connection of `key_id`, or TooManySockets when it holds `limit` already."""
        held = self.open.get(key_id, 0)
        if held >= limit:
            raise TooManySockets(
                f"this API key holds {held} Responses WebSocket connections open here, the most it may "
                f"({SETTING}): close one, or send the request over HTTP",
                retry=True,
            )
        self.open[key_id] = held + 1

    def give_back(self, key_id: str) -> None:
        held = self.open.get(key_id, 0) - 1
        if held > 0:
            self.open[key_id] = held
        else:
            self.open.pop(key_id, None)


async def refuse(websocket: WebSocket, response: Any, exc: APIError) -> None:
    """The handshake answered as an HTTP request would be (401 with our error body) where the server can
    (ASGI's denial response), else closed with 1008 (policy violation)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1008, reason=exc.message[:120])


class RefusedHandshake(logging.Filter):
    """uvicorn (its websockets-sansio protocol, 0.54) logs a handshake answered with an HTTP response (a
    refused key's 401: `_refuse`) as an error, "ASGI callable returned without completing handshake",
    although the response went out: one line at info level says what happened instead."""

    UVICORN = "ASGI callable returned without completing handshake."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.UVICORN:
            record.msg = "a WebSocket handshake was refused with an HTTP error response"
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True
