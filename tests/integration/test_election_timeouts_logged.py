"""A JetStream request that times out while a stream elects its leader (a node lost, a rolling restart) is
expected: the loops that read the bus now and then, the gateway's batch runner's scan and the classifier's
heads follower, say so in one warning line with the error, no traceback, at most once a minute while it
lasts, and go on when it ends; an unexpected error keeps its traceback. On a real nats-server, paused
(SIGSTOP) for a while: it answers nothing, as a stream without a leader."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import nats
import pytest

from switchyard.classifier.classify import Classifier
from switchyard.classifier.follower import HeadsFollower
from switchyard.cli.processes import NatsServer
from switchyard.gateway.batches.lease import Knobs
from switchyard.gateway.batches.runner import BatchRunner
from switchyard.gateway.batches.store import BatchStore, batches_bucket

pytestmark = pytest.mark.integration

PAUSE_S = 2.5
REQUEST_TIMEOUT_S = 0.3  # the clients' JetStream requests: several time out within the pause


async def pause(server: NatsServer) -> None:
    """The server paused for PAUSE_S, then answering again for half a second."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(PAUSE_S)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    await asyncio.sleep(0.5)


def said(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and r.levelno >= logging.WARNING]


def one_line_of_a_timeout(records: list[logging.LogRecord]) -> None:
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.levelno == logging.WARNING and record.exc_info is None, record.getMessage()
    assert "timeout" in record.getMessage().lower(), record.getMessage()


async def test_the_batch_runners_scan_says_a_timeout_in_one_line(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    name = "switchyard.gateway.batches.runner"
    caplog.set_level(logging.INFO, logger=name)
    nc = await nats.connect(nats_server.url)
    store = BatchStore(await batches_bucket(nc.jetstream(timeout=REQUEST_TIMEOUT_S)))
    knobs = Knobs(replica="gw-1", concurrency=1, lease_s=30.0, poll_s=1.0, principal_ttl_s=30.0)
    runner = BatchRunner(None, store, knobs, max_running=1, scan_s=0.1)  # type: ignore[arg-type]
    runner.start()
    try:
        await pause(nats_server)
        one_line_of_a_timeout(said(caplog, name))
        caplog.clear()
        # an unexpected error (a record no runner wrote) keeps its traceback
        await store.bucket.put("b.batch_unreadable", b"not a batch record")
        await store.bucket.put("a.batch_unreadable", b"")
        runner.poke()
        deadline = time.monotonic() + 5
        while not said(caplog, name) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        records = said(caplog, name)
        assert records and records[0].exc_info is not None, [r.getMessage() for r in records]
    finally:
        await runner.stop()
        await nc.close()


async def test_the_classifiers_heads_follower_says_a_timeout_in_one_line(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    name = "switchyard.classifier.follower"
    caplog.set_level(logging.INFO, logger=name)
    nc = await nats.connect(nats_server.url)
    follower = HeadsFollower(Classifier.load(), instance="cl-1", poll_s=0.2, report_s=60.0)
    await follower.start(nc.jetstream(timeout=REQUEST_TIMEOUT_S))
    try:
        await pause(nats_server)
        one_line_of_a_timeout(said(caplog, name))
    finally:
        await follower.stop()
        await nc.close()
