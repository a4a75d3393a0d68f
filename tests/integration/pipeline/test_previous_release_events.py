"""A rolling upgrade on a real nats-server: events the previous releases (44c1657, the one operators run,
and 968de8c before it) published, recorded with their code (tests/support/previous_release), are read by
this release's billing, audit and router as they would be mid-rollout: billed, in the ledger, routed;
none dead-lettered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import orjson
import pytest
from sqlalchemy import select

from switchyard.audit.db import migrations as audit_migrations
from switchyard.audit.models import LedgerEntry
from switchyard.audit.verify import verify_ledger
from switchyard.billing.db import migrations as billing_migrations
from switchyard.billing.models import CallUsageEntry, UsageEntry
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import decode
from switchyard.common.events import TaskRouted
from tests.support.bus_services import BusService
from tests.support.previous_release import previous_events
from tests.support.prices import PRICE_SHEET

pytestmark = pytest.mark.integration


@pytest.fixture
def services(nats_server: NatsServer, sqlite_url: str, tmp_path: Path) -> Iterator[None]:
    asyncio.run(billing_migrations().upgrade(sqlite_url))
    asyncio.run(audit_migrations().upgrade(sqlite_url))
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_DATABASE_URL": sqlite_url,
        "SWITCHYARD_POLICY_PATH": str(PRICE_SHEET),
        "SWITCHYARD_VAR_DIR": str(tmp_path / "var"),
        "SWITCHYARD_AUDIT_SIGNING_KEY": "22" * 32,
    }
    running = [BusService(n, env=env, log_path=tmp_path / f"{n}.log") for n in ("billing", "audit", "router")]
    try:
        for service in running:
            asyncio.run(service.start())
        yield
    finally:
        for service in running:
            service.stop()


async def _until(probe: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("not done in time")
        await asyncio.sleep(0.2)


# The keys of the undelivered calls billed on their own: 968de8c's recorded call was one, naming no key;
# 44c1657's is its answer's call (billed with the task, not on its own), as the local model made it.
@pytest.mark.parametrize(("release", "call_keys"), [("44c1657", []), ("968de8c", [None])])
async def test_the_previous_release_s_events_are_billed_audited_and_routed(
    services: None, nats_server: NatsServer, sqlite_url: str, release: str, call_keys: list[str | None]
) -> None:
    recorded = previous_events(release)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    routed_sub = await nc.subscribe(subjects.TASK_ROUTED)
    engine = create_engine(sqlite_url)
    sessions = sessionmaker(engine)
    try:
        for item in recorded:
            raw = orjson.dumps(item["event"])
            await js.publish(item["subject"], raw, headers={"Nats-Msg-Id": item["event"]["id"]})

        # the router routes the previous classifier's task (the executor would run it)
        msg = await routed_sub.next_msg(timeout=20)
        _, routed = decode(msg.data, (TaskRouted,))
        assert isinstance(routed, TaskRouted) and routed.task.task_id == "task-prev-1"
        assert routed.task.budget is None  # no hard budget said: nothing capped, as before

        async def billed() -> bool:
            async with sessions() as session:
                tasks = list((await session.execute(select(UsageEntry))).scalars())
                calls = list((await session.execute(select(CallUsageEntry))).scalars())
            return len(tasks) == 1 and len(calls) == len(call_keys)

        await _until(billed)
        async with sessions() as session:
            calls = list((await session.execute(select(CallUsageEntry))).scalars())
            task = (await session.execute(select(UsageEntry))).scalar_one()
        # the result names the task's key
        assert ([c.api_key_id for c in calls], task.task_id, task.api_key_id) == (
            call_keys,
            "task-prev-1",
            "key-prev-1",
        )

        previous_ids = {item["event"]["id"] for item in recorded}

        async def audited() -> bool:
            async with sessions() as session:
                ids = set((await session.execute(select(LedgerEntry.event_id))).scalars())
            return previous_ids <= ids

        await _until(audited)
        report = await verify_ledger(sessions)
        assert report.ok

        info = await js.stream_info(subjects.STREAM_DLQ)
        assert info.state.messages == 0, "a previous release's event was dead-lettered"
    finally:
        await routed_sub.unsubscribe()
        await nc.close()
        await engine.dispose()
