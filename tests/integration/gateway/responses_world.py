"""What the Responses face's HTTP tests run against: a gateway process on a real nats-server and SQLite
with one organisation (`world`), and a test's scripted pipeline answering the tasks it submits
(`answering`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import nats
import openai
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.envelope import encode
from switchyard.common.events import TaskCompleted, TaskFailed, TaskSubmitted, Usage
from switchyard.gateway.db import migrations
from tests.integration.gateway.harness import Org, gateways, make_org
from tests.support.tasks import completed_of

MODEL = "openai/gpt-4o-mini"  # the model the scripted pipelines answer with
World = tuple[NatsServer, str, Org]  # the nats-server, the gateway's base URL, the organisation


class Answers(Protocol):
    async def on_task(self, msg: Msg) -> None: ...


A = TypeVar("A", bound=Answers)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("responses")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    asyncio.run(migrations().upgrade(db_url))
    org = asyncio.run(make_org(db_url, "acme", roles=("member",)))
    try:
        with gateways(server, db_url, tmp) as (base,):
            yield server, base, org
    finally:
        server.stop()


@pytest.fixture
async def sdk(world: World) -> AsyncIterator[openai.AsyncOpenAI]:
    """OpenAI's SDK on the gateway, with the organisation's member key (no retries: a test sees each call)."""
    _, base, org = world
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=org.keys["member"], max_retries=0, timeout=30)
    yield client
    await client.close()


@asynccontextmanager
async def answering(world: World, pipeline: Callable[[Client], A]) -> AsyncIterator[A]:
    """`pipeline` (made with its own bus connection) gets every task submitted while this is open."""
    nc = await nats.connect(world[0].url)
    me = pipeline(nc)
    await nc.subscribe(subjects.TASK_SUBMITTED, cb=me.on_task)
    await nc.flush()  # the server has the subscription before the test submits
    try:
        yield me
    finally:
        await nc.close()


def completed(task: TaskSubmitted, content: str, *, completion_tokens: int, **fields: Any) -> TaskCompleted:
    """`task`'s result as the executor gives it, answered by MODEL."""
    usage = Usage(prompt_tokens=9, completion_tokens=completion_tokens)
    return completed_of(task, content, model=MODEL, usage=usage, latency_ms=5.0, **fields)


async def publish(nc: Client, outcome: TaskCompleted | TaskFailed) -> None:
    _, raw = encode(outcome, source="test")
    await nc.jetstream().publish(subjects.result_subject(outcome.tenant_id, outcome.task_id), raw)
