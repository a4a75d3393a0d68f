"""A task's stored result: the events stream keeps each result event under its task's own subject, so the
last message there says whether the task ended (and how), for as long as the stream keeps events (7 days).

One look-up (`get_last_msg`, a JetStream API round trip) on the tenant's subject, then on the subject a
release before tenant tokens used (`result.<task_id>`: docs/operations/upgrades.md). Either counts only
when its event names the tenant and the task: any bus user can have the server store its publishes' acks
on any subject of the stream (NATS checks no reply subject), and re-deliver the results its own consumer
reads there (another task's, or another organisation's), so a message on the subject is not the result;
and one stored after the result hides it from that look-up, so then the subject's earlier messages are
read (`_before`: a round trip each, up to SCANNED; only then).
"""

from __future__ import annotations

import orjson
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from switchyard.common import subjects

# How many earlier messages of a result subject are read when its last is no result of its task (a
# planted one after the result): a task's subject holds its result, rarely twice, and what was planted.
SCANNED = 16


async def stored(js: JetStreamContext, tenant_id: str, task_id: str) -> RawStreamMsg | None:
    """The tenant's task's result message as the stream keeps it; None when there is none."""
    for subject in (subjects.result_subject(tenant_id, task_id), subjects.legacy_result_subject(task_id)):
        try:
            last = await js.get_last_msg(subjects.STREAM_EVENTS, subject)
        except NotFoundError:
            continue
        if names(last.data or b"", tenant_id, task_id):
            return last
        found = await _before(js, subject, last.seq or 0, tenant_id, task_id)
        if found is not None:
            return found
    return None


async def _before(
    js: JetStreamContext, subject: str, last_seq: int, tenant_id: str, task_id: str
) -> RawStreamMsg | None:
    """The latest result of the task among the first SCANNED messages of `subject` before `last_seq`: what
    was stored after the result (an ack a bus user had sent there) hides it from `get_last_msg`."""
    found, seq = None, 1
    for _ in range(SCANNED):
        try:
            msg = await js.get_msg(subjects.STREAM_EVENTS, seq=seq, subject=subject, next=True)
        except NotFoundError:
            break
        if msg.seq is None or msg.seq >= last_seq:
            break
        if names(msg.data or b"", tenant_id, task_id):
            found = msg
        seq = msg.seq + 1
    return found


def names(raw: bytes, tenant_id: str, task_id: str) -> bool:
    """Whether `raw` is an event whose data names this tenant and this task."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    data = event.get("data") if isinstance(event, dict) else None
    return isinstance(data, dict) and data.get("tenant_id") == tenant_id and data.get("task_id") == task_id
