"""Shared by the executor's integration tests: a nats-server and a fake OpenAI upstream; a client of a
module's `stack`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import bus
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer

if TYPE_CHECKING:
    from tests.integration.executor.test_service import Stack


@dataclass
class Upstream:
    nats: NatsServer
    fake: FakeOpenAI
    env: dict[str, str]  # the executor's settings to reach both
    tmp: Path
    url: str  # the fake's


@contextlib.contextmanager
def nats_and_fake_openai(tmp: Path) -> Iterator[Upstream]:
    """A real nats-server and a fake OpenAI upstream, with the executor's settings to reach them."""
    server = NatsServer(tmp / "jetstream").start()
    fake = FakeOpenAI()
    try:
        with BackgroundServer(fake.app) as http:
            env = {
                "SWITCHYARD_NATS_URL": server.url,
                "OPENAI_API_KEY": fake.api_key,
                "OPENAI_BASE_URL": f"{http.url}/v1",
                "ANTHROPIC_API_KEY": "",
            }
            yield Upstream(server, fake, env, tmp, http.url)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """A nats-server and a fake OpenAI; each test starts its own executor when it wants one."""
    with nats_and_fake_openai(tmp_path_factory.mktemp("upstream")) as running:
        running.env.update({"SWITCHYARD_LOCAL_ENABLED": "false", "SWITCHYARD_RETRY_MAX": "0"})
        yield running


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[nats.NATS]:
    """A client of the module's `stack` (its nats-server), the streams made."""
    nc = await nats.connect(stack.nats_url)
    await bus.ensure_streams(nc.jetstream())
    yield nc
    await nc.close()
