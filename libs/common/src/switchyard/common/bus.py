"""The bus: streams, publishing with de-duplication ids, and consumers with a deliberate ack policy.

Every consumer here is a durable pull consumer with manual acknowledgement:
- a valid event is acked after the handler's durable effect is done;
- an invalid event (bad JSON, wrong type, bad payload) goes to the dead-letter stream with the reason and
  is terminated: redelivering it cannot help;
- a failing handler is redelivered with backoff until `max_deliver`, then dead-lettered;
- a handler that failed because its database cannot be reached (`outage`, given by the services that write
  to one) is redelivered with the same backoff for up to OUTAGE_RIDE_S (a day), without counting against
  `max_deliver`: a database outage or failover holds usage, ledger and erasure events on the stream until
  the database is back, instead of dead-lettering them for an operator's `dlq replay`; its other
  deliveries (failed, or never settled: the process killed or hung on the event) count against
  `max_deliver` across processes and replicas (outage_ride.py), and the event is dead-lettered after them.
Nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faststream.nats import ConsumerConfig, NatsBroker
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue
from opentelemetry.trace import SpanKind
from prometheus_client import Histogram

from switchyard.common import bus_auth, bus_guard, kv, metrics, outage_ride, provisioning, subjects, tracing
from switchyard.common.bus_auth import NatsCredentials
from switchyard.common.config import STOP_GRACE_S, CommonSettings
from switchyard.common.consumer import PullConsumer
from switchyard.common.dlq import OMITTED_HEADER
from switchyard.common.envelope import CONTENT_TYPE, MSG_ID, CloudEvent, decode
from switchyard.common.errors import InvalidEvent, SwitchyardError
from switchyard.common.events.base import EventPayload
from switchyard.common.outage_ride import OutageCounts, OutageRide
from switchyard.common.publisher import EventPublisher as EventPublisher  # every service imports it from here

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent, Any], Awaitable[None]]

DUPLICATE_WINDOW_S = 120.0
EVENTS_MAX_AGE_S = 7 * 24 * 3600.0
DLQ_MAX_AGE_S = 30 * 24 * 3600.0
BACKOFF_CAP_S = 30.0
# How long a consumer given `outage` keeps retrying an event whose handler cannot reach its database (the
# events stream keeps events EVENTS_MAX_AGE_S): ~2,880 redeliveries at BACKOFF_CAP_S.
OUTAGE_RIDE_S = 24 * 3600.0
OUTAGE_LOG_EVERY_S = 60.0
# The code of an event given up by a consumer that rides out outages: its deliveries that were not outage
# retries never settled it (the same code as the executors' sweep of events stranded at the server's limit).
NEVER_SETTLED = "never_settled"
NOT_PUBLISHED = (
    "a JetStream read's answer (Nats-Stream header) the stream caught, not a published event: a client "
    "made its request's reply subject one the stream stores"
)

# Where a hop's time goes: waiting (stored on the stream -> handler starts, first deliveries only) and work
# (handler start -> settled). `bench/trace.py` reads both per consumer to break a request down by stage.
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONSUME_WAIT = Histogram(
    "switchyard_consume_wait_seconds",
    "From an event's storage on the stream to its handler starting (first deliveries)",
    ["consumer"],
    buckets=_BUCKETS,
)
HANDLE_TIME = Histogram(
    "switchyard_handle_seconds",
    "From a handler starting to the message settled",
    ["consumer"],
    buckets=_BUCKETS,
)


# The delivery count of the message whose handler is running (1 = first delivery). A handler whose
# idempotency check costs a round trip can skip it on a first delivery: nothing can have handled it yet.
_DELIVERY: contextvars.ContextVar[int] = contextvars.ContextVar("switchyard_delivery", default=1)
# The subject the event being handled was stored on, as the server has it (what NATS permissions checked
# its publisher against), not as its payload says: the ledger records it (audit/provenance.py).
_SUBJECT: contextvars.ContextVar[str | None] = contextvars.ContextVar("switchyard_subject", default=None)


def delivery() -> int:
    """How many times the bus has delivered the event being handled (1 outside a handler)."""
    return _DELIVERY.get()


def delivered_subject() -> str | None:
    """The subject the event being handled arrived on (None outside a handler)."""
    return _SUBJECT.get()


def redelivery_backoff(max_deliver: int) -> list[float]:
    """Delays between redeliveries: 0.5 s doubling, capped at 30 s (one fewer than deliveries)."""
    return [min(0.5 * 2**i, BACKOFF_CAP_S) for i in range(max(max_deliver - 1, 1))]


def outage_deliveries(max_deliver: int) -> int:
    """The server's delivery limit of a consumer that rides out database outages: its own `max_deliver` for
    failures of its own, plus a redelivery every BACKOFF_CAP_S for OUTAGE_RIDE_S."""
    return max_deliver + int(OUTAGE_RIDE_S / BACKOFF_CAP_S)


def make_broker(nats_url: str, *, name: str, credentials: NatsCredentials | None = None) -> NatsBroker:
    """A broker for `nats_url`, as `credentials` (else as the URL's own user, if any). Refused
    credentials end its `connect` with BusRefused (one line at the service's exit)."""
    # FastStream logs two lines per message it handles ("Received", "Processed") at `log_level`; at INFO
    # every ping and RPC (and, before bus.subscribe left FastStream, every event) wrote them. Debug output.
    return NatsBroker(
        nats_url,
        name=f"switchyard-{name}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        log_level=logging.DEBUG,
        error_cb=bus_auth.refusing_error_cb(nats_url, credentials),
        security=credentials.faststream_security() if credentials is not None else None,
        inbox_prefix=credentials.inbox_prefix if credentials is not None else bus_auth.INBOX_PREFIX,
    )


def connection(broker: NatsBroker) -> Client:
    return broker.config.connection_state.connection  # type: ignore[no-any-return]


def jetstream(broker: NatsBroker) -> JetStreamContext:
    return broker.config.connection_state.stream  # type: ignore[no-any-return]


def stream_configs(replicas: int) -> list[api.StreamConfig]:
    """The events stream, the dead letters' stream and the stranded events' advisories, on `replicas`
    servers."""
    return [
        api.StreamConfig(
            name=name,
            subjects=list(subs),
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=max_age,
            duplicate_window=DUPLICATE_WINDOW_S,
            num_replicas=replicas,
        )
        for name, subs, max_age in (
            (subjects.STREAM_EVENTS, subjects.STREAM_EVENTS_SUBJECTS, EVENTS_MAX_AGE_S),
            (subjects.STREAM_DLQ, subjects.STREAM_DLQ_SUBJECTS, DLQ_MAX_AGE_S),
            (subjects.STREAM_STRANDED, subjects.STREAM_STRANDED_SUBJECTS, DLQ_MAX_AGE_S),
        )
    ]


async def ensure_streams(js: JetStreamContext, *, replicas: int | None = None) -> None:
    """Create or update the streams. Safe to call from every service on every start; with
    SWITCHYARD_BUS_PROVISIONED only checks them (provisioning.py).

    `replicas` defaults to SWITCHYARD_STREAM_REPLICAS (1): every service must agree on it, or each start
    would move the streams back and forth; on a 3-node cluster set it to 3 everywhere.
    """
    for config in stream_configs(CommonSettings().stream_replicas if replicas is None else replicas):
        await provisioning.prepare(js, config)


async def dead_letter(
    publisher: EventPublisher,
    *,
    service: str,
    consumer: str,
    raw: Any,
    reason: str,
    code: str,
) -> None:
    """Copies a delivered message, byte for byte, to the dead-letter stream with why it was rejected
    (`dead_letter_stored`)."""
    meta = raw.metadata
    await dead_letter_stored(
        publisher,
        service=service,
        consumer=consumer,
        subject=raw.subject,
        data=raw.data or b"",
        seq=meta.sequence.stream if meta is not None else 0,
        deliveries=meta.num_delivered if meta is not None else 0,
        reason=reason,
        code=code,
    )


async def dead_letter_stored(
    publisher: EventPublisher,
    *,
    service: str,
    consumer: str,
    subject: str,
    data: bytes,
    seq: int,
    deliveries: int,
    reason: str,
    code: str,
) -> None:
    """Copies the message stored at `seq` of the events stream on `subject` to the dead-letter stream with
    why it was rejected. A message too large to copy with the dead letter's headers is dead-lettered
    without its body (header `Switchyard-Dlq-Body-Omitted`: its size; it stays at its sequence of the
    events stream)."""
    body = data
    headers = {
        "Switchyard-Dlq-Service": service,
        "Switchyard-Dlq-Consumer": consumer,
        "Switchyard-Dlq-Code": code,
        "Switchyard-Dlq-Reason": _header_safe(reason),
        "Switchyard-Dlq-Subject": subject,
        "Switchyard-Dlq-Stream-Seq": str(seq),
        "Switchyard-Dlq-Deliveries": str(deliveries),
    }
    msg_id = f"dlq-{service}-{seq}"
    if len(body) > publisher.room({MSG_ID: msg_id, "content-type": CONTENT_TYPE, **headers}):
        log.warning(
            "dead letter of %s seq %d: its %d bytes not copied (max_payload)", service, seq, len(body)
        )
        headers[OMITTED_HEADER] = str(len(body))
        body = b""
    ack = await publisher.publish_raw(subjects.dlq_subject(service), body, msg_id=msg_id, headers=headers)
    if not ack.duplicate:
        metrics.observe_dead_letter(consumer=consumer, code=code)


def _header_safe(text: str) -> str:
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return cleaned[:1000]


def _span_attributes(event: CloudEvent, subject: str, durable: str, delivered: int) -> dict[str, Any]:
    """A consumer span's attributes (OpenTelemetry's messaging conventions): ids, never the payload."""
    if not tracing.enabled():
        return {}
    return {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.destination.name": subject,
        "messaging.consumer.group.name": durable,
        "messaging.message.id": event.id,
        "switchyard.tenant_id": event.tenantid or "",
        "switchyard.delivery": delivered,
    }


async def _with_heartbeat(work: Awaitable[None], raw: Any, every_s: float | None) -> None:
    if every_s is None:
        await work
        return

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await raw.in_progress()
            except Exception as exc:  # the connection is down: redelivery may follow, and is idempotent
                log.warning("could not mark %s in progress: %s", raw.subject, exc)

    beating = asyncio.create_task(beat())
    try:
        await work
    finally:
        beating.cancel()


def subscribe(
    broker: NatsBroker,
    *,
    consumer: subjects.Consumer,
    service: str,
    publisher: Callable[[], EventPublisher],
    expected: Sequence[type[EventPayload]] | None,
    handler: Handler,
    max_workers: int = 1,
    ack_wait_s: float = 30.0,
    description: str | None = None,
    heartbeat_s: float | None = None,
    batch_size: int | None = None,
    gather_s: float = 0.0,
    on_invalid: Callable[[bytes, InvalidEvent, str], Awaitable[None]] | None = None,
    outage: Callable[[BaseException], bool] | None = None,
    dead_letters: Sequence[str] = (),
) -> None:
    """Registers `handler` as a durable pull consumer with manual, deliberate acknowledgement; it runs
    between `start_consumers(broker)` and `stop_consumers(broker)` (the service lifecycle calls both).

    `publisher` is a callable because the JetStream context exists only once the broker is connected.
    With `heartbeat_s`, a handler that runs longer than that tells the server every `heartbeat_s` seconds
    that the message is still in progress, so a long task is not redelivered after `ack_wait_s`.
    `batch_size` bounds what one replica pulls ahead of its workers (a work queue of long tasks wants 1:
    a message waiting in one replica's buffer is neither running nor available to another replica).
    `gather_s` trades that much delivery latency for one wake-up per burst (see `consumer.py`): for
    consumers off the request path whose handlers batch their writes.
    `on_invalid` hears each invalid event (and the subject it came on) once it is dead-lettered (to tell
    its sender, where it can).
    `outage` tells a handler's failure that its database cannot be reached now (`db.unreachable`): such a
    failure is retried for up to OUTAGE_RIDE_S, and is counted per event in the KV bucket
    `switchyard-outage-retries`; every other delivery counts against `max_deliver`, whichever process or
    replica had it (a handler's own failure, or a delivery never settled: its process killed or hung on
    the event). Past `max_deliver` such deliveries the event is dead-lettered (`never_settled`) before its
    handler runs again; the server's limit, `outage_deliveries`, bounds every delivery together.
    `dead_letters`: the codes of the handler's own errors it may dead-letter, counted from 0 with the rest.
    """
    metrics.expect_dead_letters(consumer.durable, (*dead_letters, *([NEVER_SETTLED] if outage else [])))
    expected_types = tuple(expected) if expected is not None else None
    config = ConsumerConfig(
        durable_name=consumer.durable,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=ack_wait_s,
        max_deliver=consumer.max_deliver if outage is None else outage_deliveries(consumer.max_deliver),
        # No consumer-level `backoff`: the server would use its first step (0.5 s) instead of `ack_wait` for
        # messages still being handled, and redeliver every slower one while it runs. Failures are naked
        # with an explicit delay below instead.
        max_ack_pending=max(1000, max_workers * 4),
    )

    waited = CONSUME_WAIT.labels(consumer.durable)
    handled = HANDLE_TIME.labels(consumer.durable)
    riding = (
        None
        if outage is None
        else OutageRide(
            consumer.durable,
            own_limit=consumer.max_deliver,
            server_limit=outage_deliveries(consumer.max_deliver),
            outage=outage,
            counts=OutageCounts(consumer.stream, consumer.durable, lambda: outage_bucket(jetstream(broker))),
            backoff_cap_s=BACKOFF_CAP_S,
            log_every_s=OUTAGE_LOG_EVERY_S,
        )
    )

    async def on_message(raw: Msg) -> None:
        begun = time.time()
        meta = raw.metadata
        delivered = meta.num_delivered if meta is not None else 1
        if meta is not None and delivered == 1 and meta.timestamp is not None:
            waited.observe(max(begun - meta.timestamp.timestamp(), 0.0))
        _DELIVERY.set(delivered)  # each message is handled in its own task, so its own context
        _SUBJECT.set(raw.subject)
        try:
            await settle(raw, delivered)
        finally:
            handled.observe(time.time() - begun)

    async def settle(raw: Msg, delivered: int) -> None:
        try:
            if bus_guard.stored_answer(raw.headers):
                raise InvalidEvent(NOT_PUBLISHED, code="not_published")
            event, payload = decode(raw.data, expected_types, subject=raw.subject)
        except InvalidEvent as exc:
            await reject(raw, exc)
            return
        if riding is not None and delivered > consumer.max_deliver and await given_up(raw, event, delivered):
            return
        try:
            with tracing.span(
                f"process {event.type}",
                kind=SpanKind.CONSUMER,
                traceparent=event.traceparent,
                attributes=_span_attributes(event, raw.subject, consumer.durable, delivered),
            ):
                await _with_heartbeat(handler(event, payload), raw, heartbeat_s)
        except asyncio.CancelledError:
            # The service is stopping and this handler outlasted its grace: the message goes back now, for
            # another replica, not after `ack_wait` (handlers are idempotent on the event id).
            with contextlib.suppress(Exception):
                await raw.nak()
            raise
        except InvalidEvent as exc:  # found by the handler: an event too large to carry on (EventTooLarge)
            await reject(raw, exc)
            return
        except SwitchyardError as exc:
            if riding is not None and exc.retryable:
                await ride(raw, event.id, exc, delivered, exc.message, exc.code)
                return
            await _fail(raw, exc.message, exc.code, exc.retryable, delivered)
            return
        except Exception as exc:  # a bug or an unexpected dependency failure: retry, then dead-letter
            if riding is not None:
                await ride(raw, event.id, exc, delivered, f"{type(exc).__name__}: {exc}", "handler_error")
                return
            if delivered < consumer.max_deliver:  # one line while it is retried (a database restarting)
                log.warning(
                    "handler failed on event %s (delivery %d, retried): %s: %s",
                    event.id,
                    delivered,
                    type(exc).__name__,
                    exc,
                )
            else:
                log.exception("handler failed on event %s (last delivery %d)", event.id, delivered)
            await _fail(raw, f"{type(exc).__name__}: {exc}", "handler_error", True, delivered)
            return
        await raw.ack()

    async def given_up(raw: Msg, event: CloudEvent, delivered: int) -> bool:
        assert riding is not None
        spent = await riding.spent(_stream_seq(raw), delivered)
        if spent is None:
            return False
        reason = (
            f"{consumer.durable}: {spent} deliveries that were not database outage retries never settled the "
            "event (its handler failed, or its process was killed or hung on it each time): not handled again"
        )
        log.error("giving up event %s (delivery %d): %s", event.id, delivered, reason)
        await letter(raw, reason, NEVER_SETTLED)
        await raw.term()
        return True

    async def ride(raw: Msg, event_id: str, exc: Exception, delivered: int, reason: str, code: str) -> None:
        assert riding is not None
        delay = await riding.retry_in(event_id, _stream_seq(raw), exc, delivered)
        if delay is not None:
            await raw.nak(delay=delay)
            return
        log.error("handler failed on event %s (last try, delivery %d): %s", event_id, delivered, reason)
        await _fail(raw, reason, code, False, delivered)

    async def letter(raw: Any, reason: str, code: str) -> None:
        await dead_letter(
            publisher(), service=service, consumer=consumer.durable, raw=raw, reason=reason, code=code
        )

    async def reject(raw: Msg, exc: InvalidEvent) -> None:
        log.warning("dead-lettering invalid event on %s: %s", raw.subject, exc.message)
        await letter(raw, exc.message, exc.code)
        if on_invalid is not None:
            try:
                await on_invalid(raw.data, exc, raw.subject)
            except Exception:  # the dead letter holds it: a lost courtesy, not a lost event
                log.exception("could not answer the invalid event on %s", raw.subject)
        await raw.term()

    async def _fail(raw: Any, reason: str, code: str, retryable: bool, delivered: int) -> None:
        if retryable and delivered < consumer.max_deliver:
            await raw.nak(delay=redelivery_backoff(consumer.max_deliver)[delivered - 1])
            return
        await letter(raw, reason, code)
        await raw.term()

    # `description` documents the consumer in code; the AsyncAPI document is generated from contract.py.
    _CONSUMERS.setdefault(broker, []).append(
        PullConsumer(
            stream=consumer.stream,  # streams are ours: see ensure_streams
            subject=consumer.filter_subject,
            durable=consumer.durable,
            config=config,
            on_message=on_message,
            max_workers=max_workers,
            batch_size=batch_size or max(16, max_workers),
            gather_s=gather_s,
        )
    )


def _stream_seq(raw: Msg) -> int:
    meta = raw.metadata
    return meta.sequence.stream if meta is not None else 0


async def outage_bucket(js: JetStreamContext) -> KeyValue:
    """The KV bucket of the outage retries' counts (opened at the first outage or long-redelivered event)."""
    return await kv.bucket(js, subjects.KV_OUTAGE_RETRIES, ttl_s=outage_ride.KEEP_S)


def add_consumer(broker: NatsBroker, pull: PullConsumer) -> None:
    """A consumer of messages that are not events (the server's advisories: executor/stranded.py), run
    between `start_consumers` and `stop_consumers` like those `subscribe` registers."""
    _CONSUMERS.setdefault(broker, []).append(pull)


# The consumers `subscribe` registered, per broker: started once it is connected, stopped before it closes.
_CONSUMERS: weakref.WeakKeyDictionary[NatsBroker, list[PullConsumer]] = weakref.WeakKeyDictionary()


async def start_consumers(broker: NatsBroker) -> None:
    for pull in _CONSUMERS.get(broker, []):
        await pull.start(jetstream(broker))


async def stop_consumers(broker: NatsBroker, *, grace_s: float = STOP_GRACE_S) -> None:
    """Stops every consumer at once; handlers still running after `grace_s` are cut."""
    await asyncio.gather(*(pull.stop(grace_s) for pull in _CONSUMERS.get(broker, [])))
