"""A bus service's replica that is stopping (SIGTERM: it finishes its running handlers and drains, up to
605 s for an executor in deploy/) fails its readiness check with the reason, from the stop's first moment,
while its liveness holds. Before, its ping was answered as usual until the broker closed: the orchestrator
and compose saw a healthy replica that took no more work."""

from __future__ import annotations

import asyncio

import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common.config import CommonSettings
from switchyard.common.healthcheck import check_ping
from switchyard.common.service import create_service, start, stop

pytestmark = pytest.mark.integration


async def test_a_stopping_replica_is_not_ready(nats_server: NatsServer) -> None:
    settings = CommonSettings(nats_url=nats_server.url, instance="billing-a", metrics_port=0)
    service = create_service("billing", settings)
    release = asyncio.Event()

    async def still_draining() -> None:
        await release.wait()

    service.drain.append(still_draining)
    await start(service, settings)
    stopping: asyncio.Task[None] | None = None
    try:
        assert await check_ping(nats_server.url, "billing", instance="billing-a", timeout_s=2) is None
        stopping = asyncio.create_task(stop(service, grace_s=1))
        await asyncio.sleep(0.3)
        named = await check_ping(nats_server.url, "billing", instance="billing-a", timeout_s=2)
        assert named is not None and "'billing-a' is stopping" in named, named
        anyone = await check_ping(nats_server.url, "billing", instance="", timeout_s=1)
        assert anyone is not None and "stopping" in anyone, anyone
    finally:
        release.set()
        if stopping is not None:
            await stopping
        else:
            await stop(service, grace_s=1)
