"""A 44c1657 gateway and executor on the bus, played with raw nats-py as their code does (read with
`git show 44c1657:services/gateway/src/switchyard/gateway/tasks.py` and `.../executor/app.py`, `chunks.py`):

- its gateway subscribes (core NATS, before it publishes the task) to `switchyard.result.<task_id>` and,
  for a stream, `switchyard.chunk.<task_id>`, skipping what the JetStream server sends on a client's behalf
  (`bus_guard.refused`, the same in 44c1657);
- its executor core-publishes each chunk on `switchyard.chunk.<task_id>` and publishes the result through
  JetStream on `switchyard.result.<task_id>` with `Nats-Msg-Id` (the result's event id) and the
  CloudEvents content type.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from switchyard.common import bus_guard
from switchyard.common.envelope import CONTENT_TYPE, encode
from switchyard.common.events import TaskCompleted, TaskFailed
from switchyard.common.streaming import Chunk, decode_chunk, encode_chunk


def result_subject(task_id: str) -> str:
    return f"switchyard.result.{task_id}"


def chunk_subject(task_id: str) -> str:
    return f"switchyard.chunk.{task_id}"


@dataclass
class PreviousGateway:
    """What a 44c1657 gateway hears of one task: its chunks in order, then its result message."""

    chunks: list[Chunk] = field(default_factory=list)
    results: list[Msg] = field(default_factory=list)
    result: asyncio.Future[Msg] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    subs: list[Subscription] = field(default_factory=list)

    @classmethod
    async def listening(cls, nc: Client, task_id: str) -> PreviousGateway:
        heard = cls()

        async def on_chunk(msg: Msg) -> None:
            if not bus_guard.refused(msg, subscription=bus_guard.CHUNKS):
                heard.chunks.append(decode_chunk(msg.data))

        async def on_result(msg: Msg) -> None:
            if bus_guard.refused(msg, subscription=bus_guard.RESULTS):
                return
            heard.results.append(msg)
            if not heard.result.done():
                heard.result.set_result(msg)

        heard.subs = [
            await nc.subscribe(chunk_subject(task_id), cb=on_chunk),
            await nc.subscribe(result_subject(task_id), cb=on_result),
        ]
        return heard

    async def close(self) -> None:
        for sub in self.subs:
            await sub.unsubscribe()


async def previous_executor_answers(
    nc: Client, outcome: TaskCompleted | TaskFailed, *, event_id: str, chunks: list[Chunk]
) -> None:
    """A 44c1657 executor's answer to `outcome`'s task: its chunks, then its stored result."""
    for chunk in chunks:
        await nc.publish(chunk_subject(outcome.task_id), encode_chunk(chunk))
    eid, body = encode(
        outcome,
        source="switchyard/executor",
        event_id=event_id,
        tenant_id=outcome.tenant_id,
        subject=outcome.task_id,
    )
    headers = {"Nats-Msg-Id": eid, "content-type": CONTENT_TYPE}
    await nc.jetstream().publish(result_subject(outcome.task_id), body, headers=headers)
