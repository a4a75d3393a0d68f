"""The pull consumer under every service (`bus.subscribe`), on a real nats-server: a message goes to its
handler as soon as it arrives, not once a batch is full or a pull request ends; no more than
`max_workers` handlers run; every message is handled once and acknowledged."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, consumer, subjects
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import TaskSubmitted
from tests.support.probe import start_probe
from tests.support.tasks import hello_task

pytestmark = pytest.mark.integration


async def _start(url: str, durable: str, handler: Any, **options: Any) -> tuple[Any, bus.EventPublisher]:
    consumer = subjects.Consumer(durable, subjects.STREAM_EVENTS, subjects.TASK_SUBMITTED)
    return await start_probe(
        url, consumer, "probe", handler, expected=[TaskSubmitted], name=durable, **options
    )


async def _stop(broker: Any) -> None:
    await bus.stop_consumers(broker)
    await broker.stop()


async def test_a_lone_message_is_handled_before_its_pull_request_would_end(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A request open for 60 s that asks for 16: waiting for a full batch, or for the request to end,
    # would hold each of these messages for a minute.
    monkeypatch.setattr(consumer, "REQUEST_EXPIRES_S", 60.0)
    arrived: asyncio.Queue[str] = asyncio.Queue()

    async def handler(event: CloudEvent, payload: Any) -> None:
        arrived.put_nowait(payload.task_id)

    broker, publisher = await _start(nats_server.url, "lone", handler, max_workers=4, batch_size=16)
    try:
        for i in range(3):
            await asyncio.sleep(0.3)  # idle: the consumer's request is open on the server
            await publisher.publish(hello_task(f"t-{i}"), tenant_id="acme")
            assert await asyncio.wait_for(arrived.get(), 15) == f"t-{i}"
    finally:
        await _stop(broker)


@pytest.mark.parametrize("gather_s", [0.0, 0.1], ids=["each", "gathered"])
async def test_no_more_than_max_workers_run_and_each_message_is_handled_once(
    nats_server: NatsServer, gather_s: float
) -> None:
    # A backlog far bigger than the consumer's limit: gathering takes it with full requests, back to back.
    running = 0
    peak = 0
    handled: list[str] = []

    async def handler(event: CloudEvent, payload: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        handled.append(payload.task_id)
        running -= 1

    broker, publisher = await _start(
        nats_server.url, "bounded", handler, max_workers=2, batch_size=3, gather_s=gather_s
    )
    try:
        await asyncio.gather(*(publisher.publish(hello_task(f"t-{i}"), tenant_id="acme") for i in range(40)))
        deadline = asyncio.get_running_loop().time() + 30
        while len(handled) < 40 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # nothing more arrives (no redelivery of what was acked)
        js = bus.jetstream(broker)
        info = await js.consumer_info(subjects.STREAM_EVENTS, "bounded")
    finally:
        await _stop(broker)
    assert sorted(handled) == sorted(f"t-{i}" for i in range(40))
    assert peak == 2
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_a_handler_cut_by_a_stop_gives_its_message_back_at_once(nats_server: NatsServer) -> None:
    """A replica stopping (a rolling restart) cancels the handlers still running after its grace; their
    messages go back to the stream at once, for another replica, rather than after `ack_wait` (30 s)."""
    begun = asyncio.Event()

    async def stuck(event: CloudEvent, payload: Any) -> None:
        begun.set()
        await asyncio.Event().wait()

    arrived: asyncio.Queue[str] = asyncio.Queue()

    async def handler(event: CloudEvent, payload: Any) -> None:
        arrived.put_nowait(payload.task_id)

    first, publisher = await _start(nats_server.url, "restarted", stuck)
    await publisher.publish(hello_task("t-cut"), tenant_id="acme")
    await asyncio.wait_for(begun.wait(), 15)
    await bus.stop_consumers(first, grace_s=0.1)
    await first.stop()
    second, _ = await _start(nats_server.url, "restarted", handler)
    try:
        assert await asyncio.wait_for(arrived.get(), 5) == "t-cut"
    finally:
        await _stop(second)


async def test_a_handler_within_the_stop_grace_finishes_and_is_acked(nats_server: NatsServer) -> None:
    """The stop grace (`SWITCHYARD_STOP_GRACE_S`) is what a running handler is let finish in: one that
    ends inside it is acked, and nothing is redelivered."""
    begun, handled = asyncio.Event(), []

    async def slow(event: CloudEvent, payload: Any) -> None:
        begun.set()
        await asyncio.sleep(0.5)
        handled.append(payload.task_id)

    broker, publisher = await _start(nats_server.url, "graceful", slow)
    await publisher.publish(hello_task("t-slow"), tenant_id="acme")
    await asyncio.wait_for(begun.wait(), 15)
    await bus.stop_consumers(broker, grace_s=5.0)
    assert handled == ["t-slow"]
    js = bus.jetstream(broker)
    deadline = asyncio.get_running_loop().time() + 5  # an ack is a publish: the server applies it shortly
    while (info := await js.consumer_info(subjects.STREAM_EVENTS, "graceful")).num_ack_pending:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    await broker.stop()
    assert info.num_ack_pending == 0 and info.num_pending == 0  # unacked, it would wait out ack_wait (30 s)


async def test_sent_events_are_stored_in_the_order_sent_and_confirmed(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await bus.ensure_streams(js)
        publisher = bus.EventPublisher(js, source="probe")
        confirms = [await publisher.send(hello_task(f"t-{i}"), tenant_id="acme") for i in range(50)]
        ids = await asyncio.gather(*(confirm() for confirm in confirms))
        stored = [
            (await js.get_msg(subjects.STREAM_EVENTS, seq)).headers["Nats-Msg-Id"]  # type: ignore[index]
            for seq in range(1, 51)
        ]
        assert stored == ids
        assert len(set(ids)) == 50
    finally:
        await nc.close()


async def test_an_event_the_stream_could_not_take_is_published_by_its_confirmation(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        publisher = bus.EventPublisher(js, source="probe")
        confirm = await publisher.send(hello_task("t-late"), tenant_id="acme")  # no stream yet: no ack
        confirming = asyncio.create_task(confirm())
        await asyncio.sleep(0.2)
        await bus.ensure_streams(js)
        event_id = await asyncio.wait_for(confirming, 30)
        stored = await js.get_last_msg(subjects.STREAM_EVENTS, subjects.TASK_SUBMITTED)
        assert stored.headers is not None and stored.headers["Nats-Msg-Id"] == event_id
        info = await js.stream_info(subjects.STREAM_EVENTS)
        assert info.state.messages == 1
    finally:
        await nc.close()


def _bursts(times: list[float], gap_s: float) -> int:
    """How many groups the arrival times fall into, a group ending where two arrivals are `gap_s` apart."""
    ordered = sorted(times)
    return 1 + sum(1 for a, b in itertools.pairwise(ordered) if b - a > gap_s)


async def _trickle(
    url: str, durable: str, *, count: int, every_s: float, **options: Any
) -> tuple[list[float], list[float]]:
    """Publishes `count` events `every_s` apart; the times (loop clock) they were published and their
    handlers started."""
    arrived: list[float] = []
    published: list[float] = []
    loop = asyncio.get_running_loop()

    async def handler(event: CloudEvent, payload: Any) -> None:
        if payload.task_id.startswith(f"{durable}-"):  # not the other trickle's events on the stream
            arrived.append(loop.time())

    broker, publisher = await _start(url, durable, handler, max_workers=64, **options)
    try:
        await asyncio.sleep(0.3)  # idle first: the consumer waits with an open request
        for i in range(count):
            await publisher.publish(hello_task(f"{durable}-{i}"), tenant_id="acme")
            published.append(loop.time())
            await asyncio.sleep(every_s)
        deadline = loop.time() + 15
        while len(arrived) < count and loop.time() < deadline:
            await asyncio.sleep(0.05)
        info = await bus.jetstream(broker).consumer_info(subjects.STREAM_EVENTS, durable)
    finally:
        await _stop(broker)
    assert len(arrived) == count
    assert info.num_ack_pending == 0
    assert info.num_pending == 0
    return published, arrived


async def test_gathering_takes_a_trickle_of_events_in_bursts(nats_server: NatsServer) -> None:
    # 40 events 15 ms apart (0.6 s): one at a time they start 40 handlers spread evenly; gathered every
    # 0.2 s they start in a handful of bursts (the first event at once, then what piled up).
    # On a busy machine the publisher's own sleeps bunch events too: one at a time, the handlers start in
    # about as many groups as the events were published in.
    published, spread = await _trickle(nats_server.url, "trickle-each", count=40, every_s=0.015)
    _, gathered = await _trickle(nats_server.url, "trickle-gathered", count=40, every_s=0.015, gather_s=0.2)
    assert _bursts(published, 0.008) >= 12, published  # the trickle was one (the check below means something)
    assert _bursts(spread, 0.008) >= 0.75 * _bursts(published, 0.008)
    assert _bursts(gathered, 0.008) <= 8


async def test_gathering_handles_the_first_event_after_idle_at_once(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "REQUEST_EXPIRES_S", 60.0)
    arrived: asyncio.Queue[str] = asyncio.Queue()

    async def handler(event: CloudEvent, payload: Any) -> None:
        arrived.put_nowait(payload.task_id)

    broker, publisher = await _start(nats_server.url, "gather-idle", handler, max_workers=8, gather_s=5.0)
    try:
        for i in range(2):
            await asyncio.sleep(0.3)
            await publisher.publish(hello_task(f"g-{i}"), tenant_id="acme")
            # Waiting with an open request, the consumer gets the first event at once; only what comes
            # after it waits for the gathering request (5 s here).
            assert await asyncio.wait_for(arrived.get(), 2 if i == 0 else 15) == f"g-{i}"
    finally:
        await _stop(broker)
