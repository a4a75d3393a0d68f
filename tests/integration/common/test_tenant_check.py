"""The pipeline's tenant check (common/tenants.py) on a real nats-server's KV bucket: its three modes,
the registry read from the server for a tenant the watch has not brought yet, an entry trusted no longer
than `trust_s` when the watch stops, and an erased tenant that nothing registers again."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import pytest
from nats.js.kv import KeyValue

from switchyard.cli.processes import NatsServer
from switchyard.common import tenants
from switchyard.common.errors import TransientError

pytestmark = pytest.mark.integration


@pytest.fixture
async def bucket(nats_server: NatsServer) -> AsyncIterator[KeyValue]:
    nc = await nats.connect(nats_server.url)
    yield await tenants.registry_bucket(nc.jetstream())
    await nc.close()


async def started(
    bucket: KeyValue, mode: tenants.Mode, clock: Callable[[], float] = time.monotonic
) -> tenants.TenantCheck:
    check = tenants.TenantCheck(lambda: bucket, mode=mode, trust_s=60.0, clock=clock)
    await check.start()
    return check


async def test_the_modes_before_and_after_the_registry_is_kept(bucket: KeyValue) -> None:
    auto, on, off = [await started(bucket, mode) for mode in ("auto", "on", "off")]
    try:
        assert await auto.refusal("anyone") is None  # nobody keeps a registry: as before
        assert "is no organisation" in (await on.refusal("anyone") or "")
        await tenants.register(bucket, "acme")  # read from the server, watch or not
        assert await on.refusal("acme") is None
        await tenants.mark_kept(bucket, by="test")
        await tenants.erase(bucket, "gone")
        assert "is no organisation" in (await auto.refusal("anyone") or "")
        assert "was erased" in (await auto.refusal("gone") or "")
        assert await off.refusal("gone") is None
        assert await auto.refusal("acme") is None
    finally:
        for check in (auto, on, off):
            await check.stop()


async def test_an_entry_is_read_again_once_its_trust_ran_out(bucket: KeyValue) -> None:
    """A watch that stopped delivering (here: stopped) cannot keep an erased tenant running past
    `trust_s`."""
    await tenants.register(bucket, "acme")
    await tenants.mark_kept(bucket, by="test")
    now = [0.0]
    check = await started(bucket, "auto", clock=lambda: now[0])
    await check.stop()  # no watch from here on
    assert await check.refusal("acme") is None
    await tenants.erase(bucket, "acme")
    now[0] = 59.0
    assert await check.refusal("acme") is None  # trusted still
    now[0] = 61.0
    assert "was erased" in (await check.refusal("acme") or "")


async def test_an_erased_tenant_stays_erased(bucket: KeyValue) -> None:
    assert await tenants.register(bucket, "acme", name="Acme")
    assert not await tenants.register(bucket, "acme")  # the same: nothing written
    assert await tenants.erase(bucket, "acme")
    assert not await tenants.register(bucket, "acme", name="Acme again")
    assert [(e.tenant_id, e.status, e.name) for e in await tenants.entries(bucket)] == [
        ("acme", "erased", "Acme")
    ]


async def test_an_unreachable_registry_keeps_what_the_watch_said(tmp_path: Path) -> None:
    """The registry's server lost (an R1 bucket's node): a known tenant's entry, past its trust, holds
    rather than failing every task; an unknown tenant's task is retried later (TransientError), not
    refused and not run."""
    server = NatsServer(tmp_path / "js").start()

    async def quiet(exc: Exception) -> None:  # nats-py logs each failed reconnection otherwise
        pass

    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=quiet)
    try:
        bucket = await tenants.registry_bucket(nc.jetstream())
        await tenants.register(bucket, "acme")
        await tenants.mark_kept(bucket, by="test")
        now = [0.0]
        check = await started(bucket, "auto", clock=lambda: now[0])
        assert await check.refusal("acme") is None
        server.stop()
        now[0] = 61.0
        assert await check.refusal("acme") is None
        with pytest.raises(TransientError):
            await check.refusal("nobody")
        await check.stop()
    finally:
        with contextlib.suppress(ConnectionResetError):  # its server is gone
            await nc.close()
        server.stop()
