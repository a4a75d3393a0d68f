"""A service's NATS user cannot have the JetStream server carry what it wrote to another service's core
subscriptions (bus_guard.py). The executor's user may write its KV buckets and read them, and NATS checks
neither a push consumer's deliver subject nor the reply subject of a direct get against its publish
permissions: before the guard, billing took either as the gateway's request and created a webhook
endpoint for any organisation, to any URL. The gateway's own request still creates one. A direct get
whose reply subject is one the events stream stores is stored there as an event: before, the executor's
user could so forge `organization.erased`, and billing deleted that organisation's webhook endpoints."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.js import api

from switchyard.cli import nats_users
from switchyard.common import envelope, subjects
from switchyard.common.events import AdminActionRecorded
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e
BUCKET = subjects.KV_BREAKERS  # one the executor writes
SETTLE_S = 4.0  # a forged request taken is in the table within well under a second


async def _as(stack: RunningStack, user: str) -> Client:
    who = nats_users.embedded_credentials(stack.var_dir, user)
    assert who is not None
    return await nats.connect(stack.bare_nats_url, **who.connect_options())  # type: ignore[arg-type]


def _endpoints(stack: RunningStack, url: str) -> int:
    with sqlite3.connect(stack.var_dir / "switchyard.db") as db:
        (count,) = db.execute("SELECT count(*) FROM webhook_endpoints WHERE url = ?", (url,)).fetchone()
    return int(count)


async def _written(nc: Client, tenant: str) -> tuple[str, str]:
    """A webhook creation request for `tenant` written into the executor's bucket: its key and URL."""
    key, url = f"forged-{uuid.uuid4().hex[:8]}", f"http://127.0.0.1:9/stolen/{uuid.uuid4().hex}"
    kv = await nc.jetstream().key_value(BUCKET)
    await kv.put(key, orjson.dumps({"tenant_id": tenant, "url": url}))
    return key, url


async def _created_within(stack: RunningStack, url: str, seconds: float) -> int:
    for _ in range(int(seconds / 0.2)):
        if found := _endpoints(stack, url):
            return found
        await asyncio.sleep(0.2)
    return _endpoints(stack, url)


async def test_a_push_consumer_cannot_deliver_to_billing(stack: RunningStack, bus_tenant: str) -> None:
    executor = await _as(stack, "executor")
    try:
        key, url = await _written(executor, bus_tenant)
        config = api.ConsumerConfig(
            deliver_subject=subjects.BILLING_RPC_WEBHOOK_CREATE,
            deliver_group=subjects.BILLING_RPC_QUEUE,  # billing's RPC subscribers are a queue group
            filter_subject=f"$KV.{BUCKET}.{key}",
            ack_policy=api.AckPolicy.NONE,
        )
        await executor.jetstream().add_consumer(f"KV_{BUCKET}", config=config)  # the server allows it
        assert await _created_within(stack, url, SETTLE_S) == 0
        said = (stack.var_dir / "logs" / "billing.log").read_text()  # the subject, never the payload
        assert f"refused a message on $KV.{BUCKET}.{key}" in said and url not in said
    finally:
        await executor.close()


async def test_a_direct_get_cannot_answer_into_billing(stack: RunningStack, bus_tenant: str) -> None:
    executor = await _as(stack, "executor")
    try:
        key, url = await _written(executor, bus_tenant)
        direct_get = f"$JS.API.DIRECT.GET.KV_{BUCKET}.$KV.{BUCKET}.{key}"
        await executor.publish(direct_get, b"", reply=subjects.BILLING_RPC_WEBHOOK_CREATE)
        await executor.flush()
        assert await _created_within(stack, url, SETTLE_S) == 0
    finally:
        await executor.close()


async def test_the_gateways_request_is_still_answered(stack: RunningStack, bus_tenant: str) -> None:
    gateway = await _as(stack, "gateway")
    try:
        url = f"http://127.0.0.1:9/hooks/{uuid.uuid4().hex}"
        body = orjson.dumps({"tenant_id": bus_tenant, "url": url})
        reply = await gateway.request(subjects.BILLING_RPC_WEBHOOK_CREATE, body, timeout=10)
        assert "error" not in orjson.loads(reply.data), reply.data
        assert _endpoints(stack, url) == 1
    finally:
        await gateway.close()


async def _gateway_creates(stack: RunningStack, tenant: str) -> str:
    gateway = await _as(stack, "gateway")
    try:
        url = f"http://127.0.0.1:9/hooks/{uuid.uuid4().hex}"
        body = orjson.dumps({"tenant_id": tenant, "url": url})
        reply = await gateway.request(subjects.BILLING_RPC_WEBHOOK_CREATE, body, timeout=10)
        assert "error" not in orjson.loads(reply.data), reply.data
        return url
    finally:
        await gateway.close()


async def test_a_direct_get_cannot_store_a_forged_erasure(stack: RunningStack) -> None:
    tenant = f"victim-{uuid.uuid4().hex[:8]}"
    url = await _gateway_creates(stack, tenant)
    erased = AdminActionRecorded(
        action="organization.erased",
        tenant_id=tenant,
        target_type="organization",
        target_id=tenant,
        at=datetime.now(UTC),
    )
    _, forged = envelope.encode(erased, source="switchyard/gateway", tenant_id=tenant)
    executor = await _as(stack, "executor")
    try:
        key = f"forged-{uuid.uuid4().hex[:8]}"
        await (await executor.jetstream().key_value(BUCKET)).put(key, forged)
        direct_get = f"$JS.API.DIRECT.GET.KV_{BUCKET}.$KV.{BUCKET}.{key}"
        await executor.publish(direct_get, b"", reply=subjects.ADMIN_ACTION)  # stored as an event
        await executor.flush()
    finally:
        await executor.close()
    await asyncio.sleep(SETTLE_S)  # billing reads the events stream within a second
    assert _endpoints(stack, url) == 1
