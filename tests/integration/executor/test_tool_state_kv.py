"""The executors' shared tool-call state in JetStream KV, on a real nats-server: what one replica kept,
another finds, for its tenant only; the bucket expires its entries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from switchyard.cli.processes import NatsServer
from switchyard.executor.tool_state import KEEP_S, KVToolStates, state_key, tool_state_bucket

pytestmark = pytest.mark.integration


@pytest.fixture
async def nc(tmp_path: Path) -> AsyncIterator[Client]:
    server = NatsServer(tmp_path / "js").start()
    client = await nats.connect(server.url)
    yield client
    await client.close()
    server.stop()


async def test_one_replica_keeps_and_another_finds_for_the_same_tenant_only(nc: Client) -> None:
    js = nc.jetstream()
    one, two = KVToolStates(await tool_state_bucket(js)), KVToolStates(await tool_state_bucket(js))
    await one.save("org_a", {"call_1": {"gemini_thought_signature": "c2ln"}})
    assert await two.load("org_a", ["call_1", "call_9"]) == {"call_1": {"gemini_thought_signature": "c2ln"}}
    assert await two.load("org_b", ["call_1"]) == {}
    status = await two.kv.status()
    assert status.ttl == KEEP_S  # every entry expires
    keys = await two.kv.keys()
    assert keys == [state_key("org_a", "call_1")]  # neither the tenant nor the call id in clear
