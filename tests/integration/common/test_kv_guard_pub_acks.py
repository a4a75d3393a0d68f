"""A KV revision the server stored as the acknowledgement of a JetStream publish is refused like its other
answers (common/kv_guard.py), on a real nats-server with `switchyard up`'s permissions and the integrator
scoped to one organisation. nats-server sends a publish's ack (`{"stream": ..., "seq": ...}`, no header) to
the publish's reply subject, which no permission checks; a KV bucket's stream stores it there as the key's
newest revision. So a system that may publish only its own tenant's tasks wrote another organisation's
entry of the tenant registry, and the pipeline refused that organisation's tasks (`unknown_tenant`) once
its cached entry aged, until the gateway's next sync. The ack carries none of the marks kv_guard knew (no
header, a value that is not the API's envelope): it passed as a writer's put."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client

from switchyard.cli.bus_permissions import Integrator
from switchyard.common import kv_guard, subjects, tenants
from tests.support.guarded_bus import GuardedBus, scoped_guarded_bus

pytestmark = pytest.mark.integration

SCOPED = Integrator("integrator", ("acme",))


@pytest.fixture
def scoped_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedBus]:
    yield from scoped_guarded_bus(tmp_path, monkeypatch, SCOPED)


async def _ack_into(integrator: Client, target: str, *, refused: bool = False) -> None:
    """Publishes an acme task as the integrator, its reply subject `target`: the server's ack goes there
    (`refused`: an ack that refuses it, `expected last sequence` being wrong)."""
    event = {"specversion": "1.0", "id": "bait", "source": "urn:t", "type": "switchyard.task.submitted.v1"}
    headers = {"Nats-Msg-Id": f"ack-bait-{refused}"}
    if refused:
        headers["Nats-Expected-Last-Sequence"] = "999999"
    await integrator.publish(
        subjects.scoped(subjects.TASK_SUBMITTED, "acme"), orjson.dumps(event), reply=target, headers=headers
    )
    await integrator.flush()
    await asyncio.sleep(0.3)


async def test_a_publish_ack_stored_in_another_tenants_registry_entry_is_refused(
    scoped_bus: GuardedBus,
) -> None:
    gateway = await scoped_bus.connect("gateway")
    integrator = await scoped_bus.connect(SCOPED.user)
    try:
        registry = await tenants.registry_bucket(gateway.jetstream())
        await tenants.register(registry, "globex")
        await tenants.mark_kept(registry, by="test")
        key = tenants.key_of("globex")
        check = tenants.TenantCheck(lambda: registry, mode="on", trust_s=0.0)
        await check.start()
        try:
            assert await check.refusal("globex") is None
            await _ack_into(integrator, f"$KV.{subjects.KV_TENANTS}.{key}")
            stored = await gateway.jetstream().get_msg(
                f"KV_{subjects.KV_TENANTS}", subject=f"$KV.{subjects.KV_TENANTS}.{key}", direct=False
            )
            assert orjson.loads(stored.data or b"{}").keys() >= {"stream", "seq"}  # the ack is stored
            with pytest.raises(kv_guard.ForgedEntry):
                await kv_guard.read(registry, key)
            assert await check.refusal("globex") is None  # what the replica knew holds
            await _ack_into(integrator, f"$KV.{subjects.KV_TENANTS}.{key}", refused=True)
            stored = await gateway.jetstream().get_msg(
                f"KV_{subjects.KV_TENANTS}", subject=f"$KV.{subjects.KV_TENANTS}.{key}", direct=False
            )
            assert "error" in orjson.loads(stored.data or b"{}"), stored.data
            with pytest.raises(kv_guard.ForgedEntry):
                await kv_guard.read(registry, key)
            assert await check.refusal("globex") is None
        finally:
            await check.stop()
    finally:
        await integrator.close()
        await gateway.close()
    scoped_bus.assert_clean()


def test_a_writers_value_is_no_publish_ack() -> None:
    """Values our buckets hold are not taken for an ack (nor an ack's error)."""
    for value in (
        b'{"tenant_id": "acme", "status": "active"}',
        b'{"stream": "x"}',  # no sequence: not an ack's shape
        b'{"seq": 3, "stream": "SWITCHYARD", "tenant": "acme"}',  # another key beside
    ):
        assert not kv_guard.forged(None, value), value
    for value in (
        b'{"stream":"SWITCHYARD","seq":12}',
        b'{"stream":"SWITCHYARD","seq":12,"duplicate":true}',
        b'{"stream":"KV_x","domain":"hub","seq":1}',
        b'{"error":{"code":400,"err_code":10071,"description":"wrong last sequence"},"stream":"S","seq":0}',
    ):
        assert kv_guard.forged(None, value), value
