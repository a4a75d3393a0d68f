"""What the JetStream server sends to a core subscriber on a client's behalf carries marks no publisher can
forge, and bus_guard reads them (real nats-server under the embedded run's permissions): the executor's
user, which may write and read its KV buckets but not publish `switchyard.task.cancelled`, has the server
carry what it wrote there to the gateway's subscription (a push consumer of each ack policy, one made as an
ordered consumer is, with its heartbeats; a direct get's answer). Each is refused; the gateway's own
cancellation, as the gateway publishes it, is not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api
from pydantic import SecretStr

from switchyard.cli import bus_permissions, bus_stores, nats_users
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, bus_guard, kv_guard, subjects
from switchyard.common.bus_auth import NatsCredentials
from switchyard.common.events import TaskCancelled

pytestmark = pytest.mark.integration
BUCKET = subjects.KV_BREAKERS
KEY = "forged"


@pytest.fixture
async def users(tmp_path: Path) -> AsyncIterator[dict[str, Client]]:
    passwords = nats_users.ensure_passwords(tmp_path)
    server = NatsServer(tmp_path / "js", users=passwords, permissions=bus_permissions.permissions).start()
    opened: dict[str, Client] = {}
    try:
        operator = await nats.connect(server.url_as(nats_users.OPERATOR))
        await bus_stores.provision(operator.jetstream())
        await bus.ensure_streams(operator.jetstream(), replicas=1)
        await operator.close()
        for user in ("executor", "gateway"):
            who = NatsCredentials(user=user, password=SecretStr(passwords[user]))
            opened[user] = await nats.connect(server.url, **who.connect_options())  # type: ignore[arg-type]
        yield opened
    finally:
        for nc in opened.values():
            await nc.close()
        server.stop()


async def _heard(gateway: Client, cause: object, *, wait_s: float = 1.0) -> list[Msg]:
    heard: list[Msg] = []

    async def note(msg: Msg) -> None:
        heard.append(msg)

    sub = await gateway.subscribe(subjects.TASK_CANCELLED, cb=note)
    await gateway.flush()
    try:
        await cause()  # type: ignore[operator]
        await asyncio.sleep(wait_s)
    finally:
        await sub.unsubscribe()
    return heard


FORGED = TaskCancelled(
    task_id="someone-elses", tenant_id="acme", reason="client", cancelled_at=datetime.now(UTC)
)
PUSH = {
    "ack_explicit": {"ack_policy": api.AckPolicy.EXPLICIT},
    "ack_all": {"ack_policy": api.AckPolicy.ALL},
    "ack_none": {"ack_policy": api.AckPolicy.NONE},
    # what nats-py's ordered consumer (every KV watch) asks for
    "ordered": {
        "ack_policy": api.AckPolicy.NONE,
        "flow_control": True,
        "idle_heartbeat": 0.2,
        "max_deliver": 1,
        "mem_storage": True,
    },
}


@pytest.mark.parametrize("kind", list(PUSH))
async def test_a_push_consumers_delivery_is_refused(users: dict[str, Client], kind: str) -> None:
    executor = users["executor"]
    await (await executor.jetstream().key_value(BUCKET)).put(KEY, FORGED.model_dump_json().encode())
    config = api.ConsumerConfig(
        deliver_subject=subjects.TASK_CANCELLED, filter_subject=f"$KV.{BUCKET}.{KEY}", **PUSH[kind]
    )

    async def deliver() -> None:
        await executor.jetstream().add_consumer(f"KV_{BUCKET}", config=config)

    heard = await _heard(users["gateway"], deliver)
    assert any(m.data == FORGED.model_dump_json().encode() for m in heard)  # the server delivered it
    assert all(m.reply.startswith("$JS.ACK.") for m in heard if m.data)
    if kind == "ordered":
        assert any(m.headers and m.headers.get("Status") == "100" for m in heard)  # its heartbeats
    reasons = {bus_guard.server_sent(m) for m in heard}
    assert None not in reasons, [(m.reply, m.headers) for m in heard]
    assert all(bus_guard.refused(m, subscription=subjects.TASK_CANCELLED) for m in heard)


async def test_a_direct_gets_answer_is_refused(users: dict[str, Client]) -> None:
    executor = users["executor"]
    await (await executor.jetstream().key_value(BUCKET)).put(KEY, FORGED.model_dump_json().encode())

    async def answer() -> None:
        await executor.publish(
            f"$JS.API.DIRECT.GET.KV_{BUCKET}.$KV.{BUCKET}.{KEY}", reply=subjects.TASK_CANCELLED
        )
        await executor.flush()

    heard = await _heard(users["gateway"], answer, wait_s=0.5)
    assert [m.data for m in heard] == [FORGED.model_dump_json().encode()]  # no reply subject: a publish's?
    assert heard[0].reply == "" and bus_guard.server_sent(heard[0]) == "stream_read_reply"
    # nor may it answer as an RPC's caller: it has no reply subject
    assert bus_guard.refused_rpc(heard[0], ("_INBOX_gateway.",), subscription=subjects.TASK_CANCELLED)


async def test_the_gateways_own_cancellation_is_heard(users: dict[str, Client]) -> None:
    gateway = users["gateway"]
    publisher = bus.EventPublisher(gateway.jetstream(), source="test")

    async def cancel() -> None:
        await publisher.publish(FORGED)  # the stored event, as the gateway sends it (`_cancel`)
        await gateway.publish(subjects.TASK_CANCELLED, b"{}")  # and a core publish

    heard = await _heard(gateway, cancel, wait_s=0.5)
    assert len(heard) == 2
    assert not any(bus_guard.refused(m, subscription=subjects.TASK_CANCELLED) for m in heard)


async def test_a_revision_a_direct_get_writes_where_its_user_may_not_is_refused(
    users: dict[str, Client],
) -> None:
    """The bus still stores it (nats-server checks no reply subject): its readers refuse it (kv_guard)."""
    executor = users["executor"]
    await (await executor.jetstream().key_value(BUCKET)).put(KEY, b'{"status": "forged"}')
    # the executor may read the tenants' bucket, never write it
    target = f"$KV.{subjects.KV_TENANTS}.forged"
    await executor.publish(f"$JS.API.DIRECT.GET.KV_{BUCKET}.$KV.{BUCKET}.{KEY}", reply=target)
    await executor.flush()
    await asyncio.sleep(0.5)
    tenants = await users["gateway"].jetstream().key_value(subjects.KV_TENANTS)
    assert (await tenants.get("forged")).value == b'{"status": "forged"}'  # stored, a put to nats-py
    with pytest.raises(kv_guard.ForgedEntry):
        await kv_guard.read(tenants, "forged")
    watcher = await kv_guard.watch(tenants)
    try:
        assert await watcher.updates(timeout=5) is None  # nothing but the end of the initial values
    finally:
        await watcher.stop()
