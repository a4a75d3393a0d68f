"""A cancellation the JetStream server carries to the gateway for a client (a push consumer on a KV bucket
whose deliver subject is `switchyard.task.cancelled`, which NATS does not check against that client's
permissions: bus_guard.py) does not end a task the gateway follows. Before, the gateway took it for its
own: five seconds later it timed the task out (`task.timed_out`, which stops an executor running it)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import pytest
from nats.js import api

from switchyard.cli.processes import NatsServer
from switchyard.common import envelope, subjects
from switchyard.common.events import TaskCancelled
from switchyard.gateway.tasks import SETTLE_WAIT_S
from tests.integration.gateway.harness import Bases, Org, auth, gateway_stack, make_org

pytestmark = pytest.mark.integration

BODY = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Name a prime."}]}
BUCKET = "written-by-a-client"  # on the embedded bus: one its user writes (the executor, breakers)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[NatsServer, Bases, Org]]:
    with gateway_stack(tmp_path) as (server, db_url, bases):  # no executor: the task stays queued
        yield server, bases, asyncio.run(make_org(db_url, "acme", roles=("member",)))


async def test_a_cancellation_carried_by_the_server_does_not_end_a_task(
    gateway: tuple[NatsServer, Bases, Org],
) -> None:
    server, (base,), org = gateway
    key = auth(org.keys["member"])
    async with httpx.AsyncClient(timeout=10) as c:
        task = (await c.post(f"{base}/v1/tasks", json=BODY, headers=key)).json()
        cancel = TaskCancelled(
            task_id=task["id"], tenant_id=org.id, reason="client", cancelled_at=datetime.now(UTC)
        )
        _, forged = envelope.encode(cancel, source="switchyard/gateway", tenant_id=org.id)
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await (await js.create_key_value(bucket=BUCKET)).put("forged", forged)
            config = api.ConsumerConfig(
                deliver_subject=subjects.TASK_CANCELLED,
                filter_subject=f"$KV.{BUCKET}.forged",
                ack_policy=api.AckPolicy.NONE,
            )
            await js.add_consumer(f"KV_{BUCKET}", config=config)
        finally:
            await nc.close()
        await asyncio.sleep(SETTLE_WAIT_S + 2)
        state = (await c.get(f"{base}/v1/tasks/{task['id']}", headers=key)).json()
        assert state["status"] == "queued", state
