"""CPU per consumed event on the bus path (bus.subscribe: fetch, decode, handler, ack), in isolation.

Publishes N TaskSubmitted events to a throwaway nats-server, then lets one bus.subscribe consumer with a
no-op handler drain them, and reports the consumer process's CPU per event (user+system, this process
only: the publisher runs before the clock starts).

    .venv/bin/python bench/bus_bench.py [--events 3000] [--workers 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, subjects
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import ChatRequest, TaskSubmitted

CONSUMER = subjects.Consumer("bus-bench", subjects.STREAM_EVENTS, subjects.TASK_SUBMITTED)


def _task(i: int) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=f"t-{i}",
        tenant_id="acme",
        request=ChatRequest(
            model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}]
        ),
        submitted_at=datetime.now(UTC),
    )


async def run(url: str, events: int, workers: int) -> float:
    done = asyncio.Event()
    seen = 0

    async def handler(event: CloudEvent, payload: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= events:
            done.set()

    broker = bus.make_broker(url, name="bus-bench")
    publisher: list[bus.EventPublisher] = []
    bus.subscribe(
        broker,
        consumer=CONSUMER,
        service="bus-bench",
        publisher=lambda: publisher[0],
        expected=[TaskSubmitted],
        handler=handler,
        max_workers=workers,
    )
    await broker.connect()
    js = bus.jetstream(broker)
    await bus.ensure_streams(js)
    publisher.append(bus.EventPublisher(js, source="bench"))
    for i in range(events):
        await publisher[0].publish(_task(i), tenant_id="acme")
    cpu, wall = time.process_time(), time.perf_counter()
    await broker.start()
    await bus.start_consumers(broker)
    await asyncio.wait_for(done.wait(), 300)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await bus.stop_consumers(broker)
    await broker.stop()
    print(
        f"{events} events, {workers} workers: {cpu * 1e6 / events:.0f} us CPU/event, "
        f"{events / wall:.0f} events/s"
    )
    return cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        server = NatsServer(Path(d) / "js").start()
        try:
            uvloop.run(run(server.url, args.events, args.workers))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
