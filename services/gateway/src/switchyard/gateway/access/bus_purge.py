"""An erasure deletes the organisation's task events from the bus's streams.

The events stream (`SWITCHYARD`, 7 days) holds every task's prompt (`task.submitted`, and within
`task.classified` and `task.routed`) and answer (`result.*`); the dead-letter stream (`SWITCHYARD_DLQ`, 30
days) copies of refused ones. No subject carries the tenant (the pipeline's subjects are shared), so the
streams are read, within `deadline_s`, over those subjects, and each message whose CloudEvent names the
organisation (`tenantid`, or its task's `tenant_id`) is deleted by its sequence number.

A message a durable consumer of Switchyard's services has not acknowledged yet (above its ack floor) is
left, counted in `left`: the ledger and billing read it first (a run again deletes it once they did).
Another system's consumer (an integrator's on its results) is not waited for: it never reads an erased
organisation's again. Other events
(billing, admin, security, provider calls) carry ids and counts, never content, and stay: the ledger and
the classifier's erasure consumer read them, the `organization.erased` event among them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from switchyard.common import subjects

log = logging.getLogger(__name__)

# The subjects whose events hold prompts or answers, per stream.
CONTENT = {
    subjects.STREAM_EVENTS: (f"{subjects.PREFIX}.task.>", f"{subjects.PREFIX}.result.>"),
    subjects.STREAM_DLQ: subjects.STREAM_DLQ_SUBJECTS,
}
DEADLINE_S = 60.0


@dataclass
class Purged:
    deleted: int = 0
    left: int = 0  # not yet acknowledged by a consumer of the stream
    complete: bool = True  # every message read before the deadline


def _matches(pattern: str, subject: str) -> bool:
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def _names(body: bytes, tenant_id: str) -> bool:
    """Whether the event (a CloudEvent as published, or its copy in the dead-letter stream) is the
    organisation's."""
    if tenant_id.encode() not in body:  # most are not: no parse
        return False
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(event, dict):
        return False
    if event.get("tenantid") == tenant_id:
        return True
    data: Any = event.get("data")
    if not isinstance(data, dict):
        return False
    task = data.get("task")
    return data.get("tenant_id") == tenant_id or (
        isinstance(task, dict) and task.get("tenant_id") == tenant_id
    )


async def _floors(js: JetStreamContext, stream: str) -> list[tuple[list[str], int]]:
    """Each durable consumer's filter subjects and ack floor (the stream sequence it acknowledged)."""
    floors = []
    for info in await js.consumers_info(stream):
        config = info.config
        filters = list(
            config.filter_subjects or ([config.filter_subject] if config.filter_subject else [">"])
        )
        if not config.durable_name:
            continue  # an ephemeral reader (this scan, an executor's cancellation feed): nothing to wait for
        if config.durable_name not in subjects.EVENT_DURABLES:
            continue  # another system's (an integrator's results): an erased organisation's are not its
        floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
        floors.append((filters, floor))
    return floors


async def purge_events(
    js: JetStreamContext, tenant_id: str, *, deadline_s: float = DEADLINE_S, since: datetime | None = None
) -> Purged:
    """Deletes the organisation's content events from the events and dead-letter streams (see the module);
    `since`: only those stored from then on (access/late_events.py)."""
    purged = Purged()
    until = time.monotonic() + deadline_s
    for stream, filters in CONTENT.items():
        try:
            last = (await js.stream_info(stream)).state.last_seq
        except NotFoundError:
            continue
        floors = await _floors(js, stream)
        for filter_subject in filters:
            if not await _scan(js, stream, filter_subject, tenant_id, last, floors, until, purged, since):
                purged.complete = False
                break
    log.info(
        "organisation %s: %d events deleted from the streams, %d left for their consumers%s",
        tenant_id,
        purged.deleted,
        purged.left,
        "" if purged.complete else " (deadline reached: run the erasure again)",
    )
    return purged


async def _scan(
    js: JetStreamContext,
    stream: str,
    filter_subject: str,
    tenant_id: str,
    last: int,
    floors: list[tuple[list[str], int]],
    until: float,
    purged: Purged,
    since: datetime | None = None,
) -> bool:
    """Reads `filter_subject` of `stream` (from `since`) up to sequence `last`; False when the deadline came
    first."""
    config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL, filter_subject=filter_subject)
    if since is not None:
        config.deliver_policy, config.opt_start_time = api.DeliverPolicy.BY_START_TIME, since
    sub = await js.subscribe(
        filter_subject, stream=stream, ordered_consumer=True, idle_heartbeat=1.0, config=config
    )
    seen = 0  # the consumer's sequence of the last message read (how many it delivered up to it)
    try:
        if await _all_read(sub, seen):
            return True  # nothing on these subjects
        while True:
            left_s = until - time.monotonic()
            if left_s <= 0:
                return False
            try:
                msg = await sub.next_msg(timeout=min(left_s, 2.0))
            except TimeoutError:  # a slow delivery (a busy server) is waited for, up to the deadline
                if await _all_read(sub, seen):
                    return True
                continue
            meta = msg.metadata
            seq, seen = meta.sequence.stream, meta.sequence.consumer
            if seq > last:
                return True
            if _names(msg.data, tenant_id):
                waiting = any(
                    seq > floor and any(_matches(f, msg.subject) for f in filters)
                    for filters, floor in floors
                )
                if waiting:
                    purged.left += 1
                else:
                    try:
                        if await js.delete_msg(stream, seq):
                            purged.deleted += 1
                    except NotFoundError:
                        pass  # gone meanwhile (its age, another run)
            if meta.num_pending == 0:
                return True
    finally:
        await sub.unsubscribe()


async def _all_read(sub: JetStreamContext.PushSubscription, seen: int) -> bool:
    """Whether the server has nothing left to deliver and this reader has read all it delivered (the
    consumer's count, not the stream sequence: that one moves past the messages the filter skips). Not
    `num_pending` alone: the server may deliver every message before it answers (0 pending then), and
    they wait in this reader's queue (2 scans in 300 here; a scan that took that for "nothing here" left the
    organisation's events on the stream, saying it was complete)."""
    try:
        info = await sub.consumer_info()
    except NotFoundError:  # the ordered consumer is being recreated (a gap): not known yet
        return False
    delivered = info.delivered.consumer_seq if info.delivered is not None else 0
    return not info.num_pending and (delivered or 0) <= seen
