"""Bus services' health as an orchestrator sees it, on a real nats-server.

A replica that is stopping (SIGTERM: it finishes its running handlers and drains, up to
605 s for an executor in deploy/) fails its readiness check with the reason, from the stop's first moment,
while its liveness holds. Before, its ping was answered as usual until the broker closed: the orchestrator
and compose saw a healthy replica that took no more work.

Replicas of a docker compose service are containers with no SWITCHYARD_INSTANCE (compose cannot give each
its own): each named itself `<service>-<pid>`, `billing-1` in every container, and a health check without
the name took any replica's answer, so a healthy sibling hid a stuck replica. The default name now has the
host name (each container's own id), and the check without a name wants the answer of its own host."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common.config import CommonSettings, replica_name
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


async def test_an_unnamed_replica_is_checked_by_its_own_host(nats_server: NatsServer) -> None:
    settings = CommonSettings(nats_url=nats_server.url, metrics_port=0)  # as compose runs it: no name
    service = create_service("billing", settings)
    await start(service, settings)
    try:
        host = socket.gethostname()
        mine = await check_ping(nats_server.url, "billing", instance="", host=host, timeout_s=2)
        assert mine is None
        reply = service.ping_reply(replica_name("billing"))
        assert reply["instance"] == f"billing-{host}-{os.getpid()}" and reply["host"] == host
        # the check run in another container, whose replica is stuck: this one's answer does not hide it
        other = await check_ping(nats_server.url, "billing", instance="", host="f00dfeedbeef", timeout_s=1)
        assert other is not None and "the one on host 'f00dfeedbeef' did not" in other, other
    finally:
        await stop(service, grace_s=1)
