"""Events stranded at a consumer's last delivery: dead-lettered, and their task answered.

A handler that fails is dead-lettered by its consumer at its last delivery (bus.py). One that never
finishes is not: a process killed on the event each time (out of memory, a crash in native code), a handler
hung past the ack wait, a replica stopped while handling it. The server then stops delivering the event
and it waits, unacked, for nobody: no dead letter, and a task's submitter on the bus never hears (an HTTP
client gets its 504). The server says so once, with the advisory `io.nats.jetstream.advisory.v1.max_deliver`
(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`), which the stream SWITCHYARD_STRANDED
keeps, so no advisory is lost while no executor runs. The executors' durable consumer `stranded` reads
them: the event is copied to the dead letters of the service that consumed it (code `never_settled`,
`switchyard dlq replay` sends it again), and a task of the pipeline's consumers (classifier, router,
executor) that has no result yet is answered `task.failed` `never_settled`. The executors may read any
event by sequence (they scan the stream by design) and publish any service's dead letters for this.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime

import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from switchyard.common import bus, bus_guard, invalid, kv_guard, metrics, results, subjects, tenants
from switchyard.common.consumer import PullConsumer
from switchyard.common.publisher import EventPublisher

log = logging.getLogger(__name__)

ADVISORY_TYPE = "io.nats.jetstream.advisory.v1.max_deliver"
CODE = "never_settled"
# An advisory the server never gave: a user that may write a KV bucket can have a direct get of its value
# answered to the advisories' subject (no permission checks a reply subject), which the stream stores
# with the answer's headers (`Nats-Stream`...); a server's advisory carries none.
FORGED = "forged_advisory"

# The process whose dead letters an event of each durable joins (as its consumer's `bus.subscribe` names
# it), and, for the task pipeline, where its event holds the task ("": the event's data is the task).
PROCESS_OF = {
    subjects.CLASSIFIER_CONSUMER.durable: "classifier",
    subjects.CLASSIFIER_SCOPED_CONSUMER.durable: "classifier",
    subjects.CLASSIFIER_OUTCOMES_CONSUMER.durable: "classifier-outcomes",
    subjects.CLASSIFIER_OUTCOMES_ERASURE_CONSUMER.durable: "classifier-outcomes",
    subjects.ROUTER_CONSUMER.durable: "router",
    subjects.ROUTER_STATS_CONSUMER.durable: "router",
    subjects.EXECUTOR_CONSUMER.durable: "executor",
    subjects.BILLING_CONSUMER.durable: "billing",
    subjects.BILLING_CALLS_CONSUMER.durable: "billing",
    subjects.BILLING_WEBHOOKS_CONSUMER.durable: "billing",
    subjects.BILLING_ERASURE_CONSUMER.durable: "billing",
    subjects.AUDIT_CONSUMER.durable: "audit",
}
TASK_AT = {
    subjects.CLASSIFIER_CONSUMER.durable: "",
    subjects.CLASSIFIER_SCOPED_CONSUMER.durable: "",  # read only when it names the subject's tenant
    subjects.ROUTER_CONSUMER.durable: "task",
    subjects.EXECUTOR_CONSUMER.durable: "task",
}
# How the pipeline derives its task's result id from each consumer's event id (the classifier's event
# `classified`, the router's `routed`, the executor's result `result`: `EventPublisher.derived_id`, keyed
# with the deployment's secret and scoped to the task's tenant, as each service does). The answer takes
# that id, so a handler that outlived its last ack wait and went on has its result dropped by the
# server as a copy within its duplicate window, rather than a second answer (a charged one) after the
# failure its submitter heard.
TO_RESULT = {
    subjects.CLASSIFIER_CONSUMER.durable: ("classified", "routed", "result"),
    subjects.CLASSIFIER_SCOPED_CONSUMER.durable: ("classified", "routed", "result"),
    subjects.ROUTER_CONSUMER.durable: ("routed", "result"),
    subjects.EXECUTOR_CONSUMER.durable: ("result",),
}


def consumer(js: JetStreamContext, events: EventPublisher) -> PullConsumer:
    """The `stranded` consumer (bus.add_consumer registers it with the service's other consumers). The dead
    letters it may give, each durable's `never_settled`, are counted on this process's /metrics from 0."""
    spec = subjects.STRANDED_CONSUMER
    metrics.zero(metrics.DEAD_LETTERS, [(durable, CODE) for durable in PROCESS_OF])

    async def on_message(msg: Msg) -> None:
        if kv_guard.stamped(msg.headers):  # a stored answer of the server's (a direct get), no advisory
            bus_guard.REFUSED.labels(spec.stream, FORGED).inc()
            log.warning("refused a message of %s: a JetStream read's answer, not an advisory", spec.stream)
            await msg.ack()
            return
        try:
            await settle(js, events, msg.data)
        except Exception as exc:  # the bus or the stream unreachable now: the advisory comes again
            log.warning("stranded event not settled yet (%s: %s); retried", type(exc).__name__, exc)
            await msg.nak(delay=5.0)
            return
        await msg.ack()

    return PullConsumer(
        stream=spec.stream,
        subject=spec.filter_subject,
        durable=spec.durable,
        config=api.ConsumerConfig(
            durable_name=spec.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_deliver=spec.max_deliver,
        ),
        on_message=on_message,
        max_workers=1,
        batch_size=1,
    )


async def settle(js: JetStreamContext, events: EventPublisher, advisory: bytes) -> None:
    """Dead-letters the event the advisory names and answers its task; nothing for an advisory that is not
    one of ours, or whose event the stream no longer holds (expired, erased)."""
    try:
        told = orjson.loads(advisory)
        durable, seq = str(told["consumer"]), int(told["stream_seq"])
        deliveries = int(told.get("deliveries") or 0)
        ours = told.get("type") == ADVISORY_TYPE and told.get("stream") == subjects.STREAM_EVENTS
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning("skipped an advisory that is not a max-deliveries one: %.200r", advisory)
        return
    if not ours:
        return
    if durable not in PROCESS_OF:  # another system's own consumer (an integrator's on its results)
        log.info("event %d stranded at `%s`, no consumer of Switchyard's: left to its owner", seq, durable)
        return
    try:
        stored = await js.get_msg(subjects.STREAM_EVENTS, seq)
    except NotFoundError:
        log.warning("event %d stranded at `%s` is gone from the stream: nothing to dead-letter", seq, durable)
        return
    reason = (
        f"delivered {deliveries} times to `{durable}` and never settled: its handler crashed, hung past the "
        "ack wait, or its process was stopped, each time"
    )
    data = stored.data or b""
    await bus.dead_letter_stored(
        events,
        service=PROCESS_OF.get(durable, durable),
        consumer=durable,
        subject=stored.subject or "",
        data=data,
        seq=seq,
        deliveries=deliveries,
        reason=reason,
        code=CODE,
    )
    log.error("event %d dead-lettered for `%s`: %s", seq, durable, reason)
    at = TASK_AT.get(durable)
    if at is None or not _answerable(stored.subject or "", data):
        return
    found = invalid.answer(data, reason, now=datetime.now(UTC), at=at or None, code=CODE)
    if found is None or await _answered(js, found.failed.tenant_id, found.failed.task_id):
        return
    event_id = _event_id(data)
    if event_id is not None:
        for step in TO_RESULT[durable]:
            event_id = events.derived_id(event_id, step, tenant_id=found.failed.tenant_id)
        found = dataclasses.replace(found, event_id=event_id)
    await invalid.send(events, found)


def _event_id(data: bytes) -> str | None:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    found = event.get("id") if isinstance(event, dict) else None
    return found if isinstance(found, str) and found else None


def _answerable(subject: str, data: bytes) -> bool:
    """Whether the task may be answered as it names: on a tenant's scoped subject only when it names that
    tenant (one naming another is a `tenant_mismatch`, whose named tenant is never told nor touched)."""
    token = subjects.scoped_token(subject)
    named = tenants.named_in(data)
    return token is None or (named is not None and subjects.tenant_token(named) == token)


async def _answered(js: JetStreamContext, tenant_id: str, task_id: str) -> bool:
    """Whether the task has a result already (a handler that hung past the ack wait may still have
    finished): then its submitter heard, and no failure follows it. A result of that task (results.py),
    not whatever is stored on its subject (an ack a bus user had sent there)."""
    return await results.stored(js, tenant_id, task_id) is not None
