"""A consumer that rides out database outages (`outage=db.unreachable`) whose process dies on every event it
handles (`os._exit`, as an out-of-memory kill or a crash in a driver would), after its first OUTAGES
deliveries failed on a database outage (the pool timing out): each delivery it handles is written to a
file first. `python -m tests.support.poison_consumer URL DURABLE MAX_DELIVER OUTAGES FILE [SERVICE]`:
DURABLE one of the platform's consumers (with its filter, and MAX_DELIVER) or a probe's on task
submissions; SERVICE whose dead letters it files (`probe`); the NATS user from SWITCHYARD_NATS_USER and
SWITCHYARD_NATS_PASSWORD_FILE, if set (tests/support/guarded_bus.py's `env`)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path

from sqlalchemy.exc import TimeoutError as PoolTimeout

from switchyard.common import bus, bus_auth, db, subjects
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import TaskSubmitted
from tests.support.probe import start_probe

ACK_WAIT_S = 1.0


def _consumer(durable: str, max_deliver: int) -> subjects.Consumer:
    for value in vars(subjects).values():
        if isinstance(value, subjects.Consumer) and value.durable == durable:
            return dataclasses.replace(value, max_deliver=max_deliver)
    return subjects.Consumer(
        durable, subjects.STREAM_EVENTS, subjects.TASK_SUBMITTED, max_deliver=max_deliver
    )


async def main(
    url: str, durable: str, max_deliver: int, outages: int, deliveries: Path, service: str
) -> None:
    async def handler(event: CloudEvent, payload: TaskSubmitted) -> None:
        with deliveries.open("a") as out:
            out.write(f"{bus.delivery()}\n")
            out.flush()
            os.fsync(out.fileno())
        if bus.delivery() <= outages:
            raise PoolTimeout("the database cannot be reached")
        os._exit(3)

    password_file = os.environ.get("SWITCHYARD_NATS_PASSWORD_FILE")
    await start_probe(
        url,
        _consumer(durable, max_deliver),
        service,
        handler,
        expected=[TaskSubmitted],
        credentials=bus_auth.credentials(
            user=os.environ.get("SWITCHYARD_NATS_USER", ""),
            password=None,
            password_file=Path(password_file) if password_file else None,
        ),
        outage=db.unreachable,
        ack_wait_s=ACK_WAIT_S,
    )
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], args[1], int(args[2]), int(args[3]), Path(args[4]), (args[5:] or ["probe"])[0]))
