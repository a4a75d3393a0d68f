"""While a key prefix is blocked, wrong keys with it are refused without a query: the guesses the block
stops must not still cost the database one lookup each (a guesser's 429s would otherwise be as heavy as
its 401s). The real key keeps working, at one lookup per block. Real nats-server KV, real SQLite, the
gateway's own `authenticate` on requests as ASGI gives them; the database's statements are counted."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nats
import pytest
from sqlalchemy import event
from starlette.requests import Request

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.gateway.access.lockout import Lockout
from switchyard.gateway.auth import authenticate
from switchyard.gateway.db import migrations
from switchyard.gateway.errors import AuthenticationFailed, RateLimited
from switchyard.gateway.limits.counters import counter_bucket
from switchyard.gateway.tenants import KeyVerifier, create_api_key, create_tenant

pytestmark = pytest.mark.integration

PREFIX_FAILURES = 3


@dataclass
class World:
    verifier: KeyVerifier
    app: Any
    key: str
    statements: list[str]


@pytest.fixture
async def world(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[World]:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'switchyard.db'}"
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    tenant = await create_tenant(sessions, name="acme")
    key, _ = await create_api_key(sessions, tenant_id=tenant.id, name="real", scopes="inference")
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    nc = await nats.connect(nats_server.url)
    kv = await counter_bucket(nc.jetstream(), subjects.KV_GATEWAY_LIMITS, ttl_s=3600)
    lockout = Lockout(kv, None, window_s=3600, client_failures=10_000, prefix_failures=PREFIX_FAILURES)
    await lockout.start()
    app = SimpleNamespace(state=SimpleNamespace(gateway=SimpleNamespace(lockout=lockout, sso=None)))
    try:
        yield World(KeyVerifier(sessions, ttl_s=0.0), app, key, statements)
    finally:
        await lockout.stop()
        await nc.close()
        await engine.dispose()


def _request(app: Any, key: str, client: str) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/models",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {key}".encode())],
        "client": (client, 40000),
        "app": app,
        "state": {"request_id": "req_test"},
    }
    return Request(scope)


async def test_wrong_keys_of_a_blocked_prefix_never_reach_the_database(world: World) -> None:
    prefix = world.key.split("_")[1]
    for i in range(PREFIX_FAILURES):  # from as many addresses: only the prefix ties them
        with pytest.raises(AuthenticationFailed):
            await authenticate(
                _request(world.app, f"sy_{prefix}_{secrets.token_hex(16)}", f"10.9.0.{i}"), world.verifier
            )
    world.statements.clear()
    for i in range(30):
        with pytest.raises(RateLimited):
            await authenticate(
                _request(world.app, f"sy_{prefix}_{secrets.token_hex(16)}", f"10.9.1.{i}"), world.verifier
            )
    guesses = len(world.statements)
    real = await authenticate(_request(world.app, world.key, "10.9.2.1"), world.verifier)
    assert real.key_prefix == prefix  # the real key still works during the block
    assert guesses <= 1, f"30 refused guesses ran {guesses} statements"
