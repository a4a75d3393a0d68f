"""An event that kills its consumer's process each time it is handled is dead-lettered after the consumer's
`max_deliver` deliveries, on a real nats-server, across process restarts. Before, a consumer that rides out
database outages (billing's, audit's, the outcome store's) counted its handler's failures in memory, which
died with each process: the server's limit, a day of outage retries (~2,930 deliveries), was the only bound,
and the event crash-looped its consumer for a day. The outage retries before (more than `max_deliver`) do
not count; and audit's consumer does the same under the embedded run's NATS permissions."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, dlq, subjects
from tests.support.guarded_bus import GuardedBus
from tests.support.tasks import hello_task

pytestmark = pytest.mark.integration

MAX_DELIVER = 3
ROOT = Path(__file__).resolve().parents[3]


async def _crash_loop(
    js: JetStreamContext,
    url: str,
    *,
    durable: str,
    service: str,
    outages: int,
    tmp: Path,
    env: dict[str, str],
) -> tuple[list[dlq.DeadLetter], list[int], int]:
    """The event published, then a consumer process started again each time it dies (as a supervisor
    would), up to MAX_DELIVER + 3 times: its dead letters, the deliveries its handler ran on, the starts."""
    deliveries, log = tmp / "deliveries", tmp / "consumer.log"
    await bus.EventPublisher(js, source="test").publish(hello_task("t-poison"), tenant_id="acme")
    args = [url, durable, str(MAX_DELIVER), str(outages), str(deliveries), service]
    letters: list[dlq.DeadLetter] = []
    starts = 0
    loop = asyncio.get_running_loop()
    while starts < MAX_DELIVER + 3 and not letters:
        starts += 1
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.poison_consumer", *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = loop.time() + 60.0  # the outage retries' backoff: 0.5 + 1 + 2 + 4 + 8 s
            while process.poll() is None and not letters and loop.time() < deadline:
                await asyncio.sleep(0.2)
                letters = [x async for x in dlq.scan(js, service=service)]
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
    handled = [int(line) for line in deliveries.read_text().split()] if deliveries.exists() else []
    assert letters, f"not dead-lettered after {starts} processes; the handler ran on deliveries {handled}"
    return letters, handled, starts


async def _assert_given_up(
    js: JetStreamContext, found: tuple[list[dlq.DeadLetter], list[int], int], durable: str, outages: int
) -> None:
    letters, handled, starts = found
    [letter] = letters
    assert letter.code == "never_settled"
    assert letter.consumer == durable
    assert f"{MAX_DELIVER} deliveries" in letter.reason
    assert handled == list(range(1, outages + MAX_DELIVER + 1))  # never handled again once given up
    assert starts == MAX_DELIVER + 1
    state = await js.consumer_info(subjects.STREAM_EVENTS, durable)
    assert state.num_ack_pending == 0 and state.num_pending == 0  # terminated: nothing held back


# 0: the event kills every process; 5: its first five deliveries fail on a database outage (more than
# MAX_DELIVER: they do not count), then it kills every process
@pytest.mark.parametrize("outages", [0, 5])
async def test_an_event_that_kills_its_consumer_is_dead_lettered_after_max_deliver_deliveries(
    nats_server: NatsServer, tmp_path: Path, outages: int
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_NATS_")}
        found = await _crash_loop(
            js,
            nats_server.url,
            durable="poison-probe",
            service="probe",
            outages=outages,
            tmp=tmp_path,
            env=env,
        )
        await _assert_given_up(js, found, "poison-probe", outages)
    finally:
        await nc.close()


async def test_audits_consumer_counts_its_outage_retries_under_its_permissions(
    guarded: GuardedBus, tmp_path: Path
) -> None:
    nc = await nats.connect(guarded.operator_url)
    js = nc.jetstream()
    durable = subjects.AUDIT_CONSUMER.durable
    try:
        env = {**os.environ, **guarded.env("audit")}
        found = await _crash_loop(
            js, guarded.server.url, durable=durable, service="audit", outages=4, tmp=tmp_path, env=env
        )
        await _assert_given_up(js, found, durable, 4)
        counted = await (await js.key_value(subjects.KV_OUTAGE_RETRIES)).keys()
        assert counted == [f"{subjects.STREAM_EVENTS}.{durable}.1"]
        guarded.assert_clean(tmp_path / "consumer.log")
    finally:
        await nc.close()
