"""Consumer lag as Prometheus gauges: each bus service polls the JetStream state of its own durable consumers.

The same numbers the NATS monitoring endpoint (`/jsz?consumers=true`) and KEDA's `nats-jetstream` scaler
read, exported next to the service's other series so alerts and dashboards need no NATS exporter.

The age of a consumer's oldest unacked (or waiting) event is the time of its first event after the ack
floor (or the delivered sequence), read through a consumer of its own on the durable's filter subject:
`lag-<durable>`, made for one sample, starting at that sequence, headers only (no body crosses the wire),
fetched once and deleted. Not a message get (`$JS.API.STREAM.MSG.GET`): its sequence and subject travel in
the request's body, where no NATS permission reaches, so granting it would let a service read every event
of the stream (billing a user's prompt). The consumer's name and filter are in its creation's subject
(`$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`, nats-server 2.10+), which the permissions fix per
durable (cli/bus_permissions.py). Replicas of a service share the name: each sample's consumer differs
(its description), so the server refuses a second one while the first lives, and its sampler retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import APIError

from switchyard.common import metrics, subjects
from switchyard.common.background import cancel

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 10.0
TIMEOUT_S = 5.0
# A sample's consumer lives milliseconds; should its sampler die before deleting it, the server does
# within this (before the next sample, DEFAULT_INTERVAL_S later).
IDLE_S = 5.0
ALREADY_EXISTS = 10148  # nats-server's err_code: a consumer of that name and another config exists
TRIES = 4  # another replica's sample holds the name for a few milliseconds


def consumers_of(service: str) -> tuple[subjects.Consumer, ...]:
    """A service's durable consumers: by convention each is named after the service that reads it (the
    classifier's second, on the tenants' scoped subjects, `classifier-scoped`)."""
    return tuple(c for c in subjects.CONSUMERS if c.durable in (service, f"{service}-scoped"))


async def sample(js: JetStreamContext, consumer: subjects.Consumer, *, now: datetime | None = None) -> None:
    """Reads one consumer's state from the server and sets its gauges."""
    labels = (consumer.stream, consumer.durable)
    info = await js.consumer_info(consumer.stream, consumer.durable, timeout=5.0)
    pending = info.num_pending or 0
    ack_pending = info.num_ack_pending or 0
    metrics.CONSUMER_PENDING.labels(*labels).set(pending)
    metrics.CONSUMER_ACK_PENDING.labels(*labels).set(ack_pending)
    metrics.CONSUMER_REDELIVERED.labels(*labels).set(info.num_redelivered or 0)
    now = now or datetime.now(UTC)
    unacked = waiting = 0.0
    floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
    delivered = info.delivered.stream_seq if info.delivered is not None else 0
    if pending or ack_pending:
        unacked = await oldest_age(js, consumer, after=floor, now=now)
    if pending:  # a task in progress (a stream may run an hour) is not waiting: only what was never delivered
        same = not ack_pending and delivered == floor  # nothing in flight: the same first event
        waiting = unacked if same else await oldest_age(js, consumer, after=delivered, now=now)
    metrics.CONSUMER_OLDEST_UNACKED_AGE.labels(*labels).set(unacked)
    metrics.CONSUMER_OLDEST_WAITING_AGE.labels(*labels).set(waiting)


async def oldest_age(
    js: JetStreamContext, consumer: subjects.Consumer, *, after: int, now: datetime
) -> float:
    """The age of the consumer's first message after stream sequence `after` (0 when there is none), read
    through `lag-<durable>` (see the module's docstring)."""
    nc: Client = js._nc
    name = subjects.lag_consumer_name(consumer)
    api_prefix = f"{api.DEFAULT_PREFIX}.CONSUMER"
    config = api.ConsumerConfig(
        name=name,
        description=f"lag of {consumer.durable} ({uuid.uuid4().hex[:12]})",  # this sample's own
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=after + 1,
        filter_subject=consumer.filter_subject,
        ack_policy=api.AckPolicy.NONE,
        headers_only=True,
        inactive_threshold=IDLE_S,
        num_replicas=1,  # on an R3 stream too: it lives for one sample
    )
    request = {"stream_name": consumer.stream, "config": config.as_dict(), "action": "create"}
    create = f"{api_prefix}.CREATE.{consumer.stream}.{name}.{consumer.filter_subject}"
    for attempt in range(TRIES):
        answer = await _api(nc, create, request)
        error = answer.get("error")
        if error is None:
            break
        if error.get("err_code") != ALREADY_EXISTS or attempt == TRIES - 1:
            raise APIError.from_error(error)
        await asyncio.sleep(random.uniform(0.02, 0.1) * (attempt + 1))  # another replica's sample
    try:
        if not answer.get("num_pending"):  # nothing on its subject after `after`
            return 0.0
        # on an inbox of its own: a delivery keeps its event's subject, which nats-py's request() cannot match
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, max_msgs=1)
        try:
            next_one = f"{api_prefix}.MSG.NEXT.{consumer.stream}.{name}"
            await nc.publish(next_one, b'{"batch":1,"no_wait":true}', reply=inbox)
            msg = await sub.next_msg(timeout=TIMEOUT_S)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        if msg.headers and api.Header.STATUS in msg.headers:  # gone meanwhile (aged out, purged)
            return 0.0
        return max(0.0, (now - msg.metadata.timestamp).total_seconds())
    finally:
        with contextlib.suppress(nats.errors.Error):  # else the server drops it after IDLE_S
            await nc.request(f"{api_prefix}.DELETE.{consumer.stream}.{name}", b"", timeout=TIMEOUT_S)


async def _api(nc: Client, subject: str, request: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(
        (await nc.request(subject, json.dumps(request).encode(), timeout=TIMEOUT_S)).data
    )
    return answer


class LagExporter:
    """Polls the consumers every `interval_s` seconds until stopped; failures are logged, never fatal."""

    def __init__(
        self,
        js: JetStreamContext,
        consumers: Sequence[subjects.Consumer],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self._js = js
        self._consumers = tuple(consumers)
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._consumers and self._task is None:
            self._task = asyncio.create_task(self._run(), name="switchyard-lag-exporter")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            for consumer in self._consumers:
                try:
                    await sample(self._js, consumer)
                except Exception as exc:  # the bus is reconnecting or the consumer is not there yet
                    log.debug("lag of %s not sampled: %s", consumer.durable, exc)
            await asyncio.sleep(self._interval_s)
