"""A watch read only for a bucket's current values (the tenant registry's glimpse, a tenant's files listed)
leaves no consumer behind for long: the server drops it seconds after it stopped. With the five minutes a
long-lived watch keeps, each one lingered and counted what was written after it as pending (`make bench`
waited its two minutes for such a consumer to drain after every run; a client listing its files every
second would have kept ~300 on the server)."""

from __future__ import annotations

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects, tenants
from switchyard.gateway.files.store import files_bucket

pytestmark = pytest.mark.integration


async def _idle_thresholds(js: nats.js.JetStreamContext, stream: str) -> list[float]:
    return [info.config.inactive_threshold or 0.0 for info in await js.consumers_info(stream)]


async def test_a_glimpse_and_a_files_listing_leave_short_lived_consumers(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        registry = await tenants.registry_bucket(js)
        await tenants.register(registry, "acme")
        assert "acme" in await tenants.glimpse(registry)
        assert await _idle_thresholds(js, f"KV_{subjects.KV_TENANTS}") == [5.0]  # seconds

        files = await files_bucket(js)
        await files.put(tenant_id="acme", purpose="batch", filename="in.jsonl", data=b"{}\n")
        listed, _ = await files.list(tenant_id="acme", purpose=None, limit=10, after=None, order="asc")
        assert len(listed) == 1
        assert await _idle_thresholds(js, f"KV_{subjects.KV_FILES}") == [5.0]
    finally:
        await nc.close()
