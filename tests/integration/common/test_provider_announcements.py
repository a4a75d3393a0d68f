"""An executor's announcements are renewed on a real nats-server's KV bucket (keep_announced), so they
stay available while it runs and go stale once it stops renewing."""

from __future__ import annotations

import asyncio
import contextlib

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import bus
from switchyard.common.providers import ProviderStatus, announce, keep_announced, providers_bucket, read_all

pytestmark = pytest.mark.integration


async def test_announcements_are_renewed_until_cancelled(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await bus.ensure_streams(js)
        kv = await providers_bucket(js)

        def statuses() -> list[ProviderStatus]:
            return [ProviderStatus(provider="renewed", announced_by="executor-1")]

        await announce(kv, statuses()[0])
        first = (await read_all(kv))["renewed"].updated_at
        renewing = asyncio.create_task(keep_announced(kv, statuses, every_s=0.2))
        await asyncio.sleep(0.7)
        renewed = (await read_all(kv))["renewed"].updated_at
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        await asyncio.sleep(0.5)
        stopped = (await read_all(kv))["renewed"].updated_at
    finally:
        await nc.close()
    assert renewed > first  # renewed while it ran
    assert stopped == renewed  # and no more once cancelled: it goes stale from there
