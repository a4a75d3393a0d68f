"""Consumer lag as Prometheus gauges: each bus service polls the JetStream state of its own durable consumers.

The same numbers the NATS monitoring endpoint (`/jsz?consumers=true`) and KEDA's `nats-jetstream` scaler
read, exported next to the service's other series so alerts and dashboards need no NATS exporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from switchyard.common import metrics, subjects
from switchyard.common.background import cancel

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 10.0


def consumers_of(service: str) -> tuple[subjects.Consumer, ...]:
    """A service's durable consumers: by convention each is named after the service that reads it."""
    return tuple(c for c in subjects.CONSUMERS if c.durable == service)


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
    if pending or ack_pending:
        floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
        unacked = await _age(js, consumer, after=floor, now=now)
    if pending:  # a task in progress (a stream may run an hour) is not waiting: only what was never delivered
        delivered = info.delivered.stream_seq if info.delivered is not None else 0
        waiting = await _age(js, consumer, after=delivered, now=now)
    metrics.CONSUMER_OLDEST_UNACKED_AGE.labels(*labels).set(unacked)
    metrics.CONSUMER_OLDEST_WAITING_AGE.labels(*labels).set(waiting)


async def _age(js: JetStreamContext, consumer: subjects.Consumer, *, after: int, now: datetime) -> float:
    """The age of the consumer's first message after stream sequence `after` (0 when there is none)."""
    with contextlib.suppress(NotFoundError):  # the message aged out or was purged meanwhile
        oldest = await js.get_msg(consumer.stream, seq=after + 1, subject=consumer.filter_subject, next=True)
        if oldest.time is not None:
            return max(0.0, (now - oldest.time).total_seconds())
    return 0.0


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
