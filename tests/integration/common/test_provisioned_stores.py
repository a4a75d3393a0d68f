"""Streams and buckets made by the operator beforehand (SWITCHYARD_BUS_PROVISIONED): a service only opens
them, and one missing or configured otherwise than it expects stops it with a message naming the store and
what differs, instead of the service creating or changing it; without the setting it creates them as
before. `bus_stores.provision` makes every store the services open, and each then opens as they expect."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.js import JetStreamContext

from switchyard.cli import bus_stores
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, kv, subjects, vectors
from switchyard.common.provisioning import NotProvisioned
from switchyard.gateway.files.store import files_bucket
from switchyard.gateway.stored_responses.store import responses_bucket

pytestmark = pytest.mark.integration
MIB = 1024**2


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def names(js: JetStreamContext) -> set[str]:
    return {info.config.name or "" for info in await js.streams_info()}


async def test_a_provisioned_service_creates_nothing_and_names_what_is_missing(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_BUS_PROVISIONED", "true")
    with pytest.raises(
        NotProvisioned, match=r"the stream SWITCHYARD does not exist.*switchyard bus provision"
    ):
        await bus.ensure_streams(js)
    with pytest.raises(NotProvisioned, match=f"the KV bucket {subjects.KV_BUDGETS} does not exist"):
        await kv.bucket(js, subjects.KV_BUDGETS)
    with pytest.raises(NotProvisioned, match=f"the object store {subjects.OBJ_EMBEDDINGS} does not exist"):
        await vectors.open_store(js, ttl_s=60, max_bytes=MIB, replicas=1)
    with pytest.raises(NotProvisioned, match=f"the object store {subjects.OBJ_FILES} does not exist"):
        await files_bucket(js, max_bytes=MIB)
    assert await names(js) == set()


async def test_a_provisioned_service_changes_nothing_and_names_what_differs(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    await kv.bucket(js, subjects.KV_TASKS, ttl_s=60)
    await responses_bucket(js, keep_s=60, max_bytes=MIB, replicas=1, max_value_bytes=1024)
    monkeypatch.setenv("SWITCHYARD_BUS_PROVISIONED", "true")
    with pytest.raises(NotProvisioned, match=r"KV bucket switchyard-tasks .*max_age: 60.0, expected 120.0"):
        await kv.bucket(js, subjects.KV_TASKS, ttl_s=120)
    with pytest.raises(NotProvisioned, match=r"max_bytes: 1048576, expected 2097152"):
        await responses_bucket(js, keep_s=60, max_bytes=2 * MIB, replicas=1, max_value_bytes=1024)
    assert (await js.stream_info(f"KV_{subjects.KV_TASKS}")).config.max_age == 60
    # as configured, both open, and work
    tasks = await kv.bucket(js, subjects.KV_TASKS, ttl_s=60)
    await tasks.put("k", b"v")
    await responses_bucket(js, keep_s=60, max_bytes=MIB, replicas=1, max_value_bytes=1024)


async def test_without_the_setting_a_service_creates_its_stores_as_before(js: JetStreamContext) -> None:
    await bus.ensure_streams(js)
    await kv.bucket(js, subjects.KV_BUDGETS)
    await files_bucket(js, max_bytes=MIB)
    assert {"SWITCHYARD", "SWITCHYARD_DLQ", f"KV_{subjects.KV_BUDGETS}", f"OBJ_{subjects.OBJ_FILES}"} <= (
        await names(js)
    )


async def test_the_operators_list_makes_every_store_as_the_services_open_it(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    for setting in ("SWITCHYARD_FILES_BUCKET_BYTES", "SWITCHYARD_BATCH_VECTORS_BYTES"):
        monkeypatch.setenv(setting, str(64 * MIB))
    monkeypatch.setenv("SWITCHYARD_RESPONSES_BUCKET_BYTES", str(64 * MIB))
    monkeypatch.setenv("SWITCHYARD_EMBEDDING_STORE_MAX_BYTES", str(64 * MIB))
    made = await bus_stores.provision(js)
    assert set(made) == await names(js)
    assert len(made) == len(set(made)) == len(bus_stores.stores())
    await bus_stores.provision(js)  # again: brought to the same configuration, nothing new
    assert set(made) == await names(js)
    monkeypatch.setenv("SWITCHYARD_BUS_PROVISIONED", "true")
    await bus.ensure_streams(js)
    await files_bucket(js, max_bytes=64 * MIB)
    await vectors.open_store(js, ttl_s=600, max_bytes=64 * MIB, replicas=1)
    await responses_bucket(js, keep_s=30 * 24 * 3600.0, max_bytes=64 * MIB, replicas=1, max_value_bytes=1024)
