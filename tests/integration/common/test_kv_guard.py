"""A KV revision the JetStream server stored on a client's behalf is refused by kv_guard's reads (real
nats-server 2.15 under the embedded run's permissions). The executor's user may write the breakers' bucket
and only read the tenants' registry, yet has the server write into the registry: a direct get of its own
key answered to `$KV.<tenants>.<key>` (a value, a delete marker, a miss, a batch's end), and the answer of
another API request there. Through nats-py's KeyValue each is a put like any other; kv_guard's watch
skips it and its read refuses it; puts, deletes and purges of the bucket's writer pass as before."""

from __future__ import annotations

import asyncio
import json

import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from switchyard.common import kv_guard, subjects
from switchyard.common.bus_guard import REFUSED

pytestmark = pytest.mark.integration
OWN = subjects.KV_BREAKERS  # the executor writes it
TARGET = subjects.KV_TENANTS  # the executor may only read it


def refused() -> float:
    return REFUSED.labels(f"$KV.{TARGET}", kv_guard.REASON)._value.get()


async def forge(executor: Client) -> dict[str, str]:
    """Has the server write into TARGET as the executor: key -> how."""
    own = await executor.jetstream().key_value(OWN)
    await own.put("copied", b'{"tenant_id": "acme", "status": "active"}')
    await own.put("deleted", b"x")
    await own.delete("deleted")
    direct = f"$JS.API.DIRECT.GET.KV_{OWN}"
    requests = {
        "copy": (f"{direct}.$KV.{OWN}.copied", b""),
        "delete": (f"{direct}.$KV.{OWN}.deleted", b""),
        "miss": (f"{direct}.$KV.{OWN}.nothing", b""),
        "batch": (direct, json.dumps({"multi_last": [f"$KV.{OWN}.>"], "batch": 5}).encode()),
        "api": ("$JS.API.INFO", b""),
    }
    for key, (subject, payload) in requests.items():
        await executor.publish(subject, payload, reply=f"$KV.{TARGET}.forged-{key}")
    await executor.flush()
    return {f"forged-{key}": subject for key, (subject, _) in requests.items()}


async def legitimate(gateway: Client) -> KeyValue:
    registry = await gateway.jetstream().key_value(TARGET)
    await registry.put("kept", b'{"v": 1}')
    await registry.put("gone", b'{"v": 1}')
    await registry.delete("gone")
    await registry.put("purged", b'{"v": 1}')
    await registry.purge("purged")
    return registry


async def test_nats_py_takes_a_forged_revision_for_a_put(guarded_clients: dict[str, Client]) -> None:
    forged = await forge(guarded_clients["executor"])
    registry = await guarded_clients["gateway"].jetstream().key_value(TARGET)
    await asyncio.sleep(0.3)
    for key in forged:
        if key == "forged-delete":  # a deletion, as far as nats-py tells
            with pytest.raises(KeyNotFoundError):
                await registry.get(key)
            continue
        entry = await registry.get(key)
        assert entry.operation is None, key  # a put, as far as nats-py tells
    assert (await registry.get("forged-copy")).value == b'{"tenant_id": "acme", "status": "active"}'


async def test_the_watch_skips_forged_revisions_and_delivers_the_writers(
    guarded_clients: dict[str, Client],
) -> None:
    registry = await legitimate(guarded_clients["gateway"])
    forged = await forge(guarded_clients["executor"])
    await asyncio.sleep(0.3)
    before = refused()
    reader = await guarded_clients["executor"].jetstream().key_value(TARGET)  # as a reader of the registry
    watcher = await kv_guard.watch(reader)
    seen: dict[str, tuple[bytes | None, str | None]] = {}
    try:
        async with asyncio.timeout(5):
            async for entry in watcher:
                if entry is None:
                    break
                seen[entry.key] = (entry.value, entry.operation)
        assert seen == {"kept": (b'{"v": 1}', None), "gone": (b"", KV_DEL), "purged": (b"", KV_PURGE)}
        assert refused() - before == len(forged)
        # then live: a forged revision of a key the reader holds is skipped, the writer's next one comes
        await registry.put("kept", b'{"v": 2}')
        await guarded_clients["executor"].publish(
            f"$JS.API.DIRECT.GET.KV_{OWN}.$KV.{OWN}.copied", reply=f"$KV.{TARGET}.kept"
        )
        await guarded_clients["executor"].flush()
        await asyncio.sleep(0.2)
        await registry.delete("kept")
        updates = [await watcher.updates(timeout=5), await watcher.updates(timeout=5)]
        assert [(u.key, u.value, u.operation) for u in updates] == [
            ("kept", b'{"v": 2}', None),
            ("kept", b"", KV_DEL),
        ]
        assert refused() - before == len(forged) + 1
    finally:
        await watcher.stop()


async def test_the_read_refuses_forged_revisions(guarded_clients: dict[str, Client]) -> None:
    await legitimate(guarded_clients["gateway"])
    forged = await forge(guarded_clients["executor"])
    await asyncio.sleep(0.3)
    reader = await guarded_clients["executor"].jetstream().key_value(TARGET)
    before = refused()
    for key in forged:
        with pytest.raises(kv_guard.ForgedEntry):
            await kv_guard.read(reader, key)
    assert refused() - before == len(forged)
    assert (await kv_guard.read(reader, "kept"))[0] == b'{"v": 1}'
    assert await kv_guard.read(reader, "gone") == (None, None)
    assert await kv_guard.read(reader, "purged") == (None, None)
    assert await kv_guard.read(reader, "never") == (None, None)
    assert refused() - before == len(forged)
