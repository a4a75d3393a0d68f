"""Shared fixtures: a real nats-server with JetStream per test, SQLite files, a throwaway PostgreSQL."""

from __future__ import annotations

import logging
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from switchyard.cli.processes import POSTGRES_BIN, NatsServer, PostgresCluster
from tests.support.guarded_bus import GuardedBus, guarded_bus
from tests.support.postgres import started_cluster


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that configures logging (a CLI command run in-process: `siem export` calls
    `configure_logging`) leaves the root logger's handlers and level as they were. Otherwise its handler,
    bound to that test's captured stderr, wrote to a closed stream in every later test of the worker:
    `--- Logging error ---` and a traceback in their own captured stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[GuardedBus]:
    """A real nats-server as `switchyard up` runs it: each user's least-privilege permissions, the stores
    provisioned by `operator` (tests/support/guarded_bus.py)."""
    yield from guarded_bus(tmp_path)


@pytest.fixture
async def guarded_clients(guarded: GuardedBus) -> AsyncIterator[dict[str, Client]]:
    """The executor's and the gateway's clients on the guarded bus; the server refused nothing of them."""
    opened = {user: await guarded.connect(user) for user in ("executor", "gateway")}
    yield opened
    for nc in opened.values():
        await nc.close()
    guarded.assert_clean()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'switchyard.db'}"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    with started_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh database in the session's cluster for each test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    subprocess.run(
        [
            str(POSTGRES_BIN / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(postgres_cluster.port),
            "-U",
            "postgres",
            name,
        ],
        check=True,
    )
    return postgres_cluster.url(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs a test on both databases."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'switchyard.db'}"
    return str(request.getfixturevalue("postgres_url"))
