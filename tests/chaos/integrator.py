"""Another system on the bus under the chaos: it publishes tasks on its organisation's subject with nats-py
as the README's bus example does (an event id as `Nats-Msg-Id`, the publish retried while a node is lost
or a leader elected), and reads the results from its durable consumer (`<user>-<token>`, made before the
first publish with `DeliverPolicy.NEW`), acking each. Every task it published must be answered through
that consumer: a node loss must not lose a result between the stream and the integrator."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.js import api

from switchyard.common import subjects
from tests.chaos.load import paced

USER = "chaos-integrator"
RETRY_FOR_S = 30.0
PUBLISH_ERRORS = (
    nats.errors.TimeoutError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoRespondersError,
)


@dataclass
class BusStats:
    published: list[str] = field(default_factory=list)  # task ids the stream stored
    not_published: Counter[str] = field(default_factory=Counter)  # why a publish was given up
    retried: Counter[str] = field(default_factory=Counter)
    heard: Counter[str] = field(default_factory=Counter)  # task id -> results read from the durable

    def summary(self) -> str:
        missing = [t for t in self.published if not self.heard[t]]
        again = sum(n - 1 for n in self.heard.values() if n > 1)
        return (
            f"published {len(self.published)} tasks on the bus (given up {dict(self.not_published)}, retried "
            f"{dict(self.retried)}); answered through the durable consumer: "
            f"{len(self.published) - len(missing)}, heard again {again}, missing {len(missing)}"
        )


def _event(tenant_id: str, n: int) -> tuple[str, bytes]:
    event_id, task_id = str(uuid.uuid4()), uuid.uuid4().hex
    data = {
        "task_id": task_id,
        "tenant_id": tenant_id,
        "submitted_at": datetime.now(UTC).isoformat(),
        "request": {
            "model": "auto",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": f"Bus task {n}: name a prime number."}],
        },
    }
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "urn:example:chaos",
        "type": "switchyard.task.submitted.v1",
        "tenantid": tenant_id,
        "data": data,
    }
    return task_id, orjson.dumps(event)


async def integrate(
    nats_url: str, tenant_id: str, *, rate: float, stop: asyncio.Event, stats: BusStats, settle_s: float
) -> None:
    """Publishes `rate` tasks a second until `stop`, then reads results until every task published was
    answered or `settle_s` passed."""
    nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
    js = nc.jetstream()
    spec = subjects.results_consumer(USER, tenant_id)
    results = await js.pull_subscribe(
        spec.filter_subject,
        durable=spec.durable,
        stream=spec.stream,
        config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.NEW, ack_wait=10.0),
    )
    subject = subjects.scoped(subjects.TASK_SUBMITTED, tenant_id)
    done = asyncio.Event()

    async def read() -> None:
        while not done.is_set():
            try:
                for msg in await results.fetch(100, timeout=1.0):
                    task_id = orjson.loads(msg.data)["data"]["task_id"]
                    stats.heard[task_id] += 1
                    await msg.ack_sync()
            except TimeoutError:  # nothing new in a second (nats-py's own TimeoutError is one too)
                continue
            except PUBLISH_ERRORS:  # a fetch through a leader election: asked again
                await asyncio.sleep(0.2)

    async def publish(n: int) -> None:
        task_id, body = _event(tenant_id, n)
        msg_id = orjson.loads(body)["id"]
        give_up = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}, timeout=5.0)
            except PUBLISH_ERRORS as exc:
                reason = type(exc).__name__
                if time.monotonic() > give_up:
                    stats.not_published[reason] += 1
                    return
                stats.retried[reason] += 1
                await asyncio.sleep(0.5)
                continue
            stats.published.append(task_id)
            return

    reader = asyncio.create_task(read())
    try:
        await paced(publish, rate=rate, stop=stop)
        deadline = time.monotonic() + settle_s
        while any(not stats.heard[t] for t in stats.published) and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
    finally:
        done.set()
        await reader
        await nc.close()
