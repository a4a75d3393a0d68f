"""A task's stored result: the events stream keeps each result event under its task's own subject, so the
last message there says whether the task ended (and how), for as long as the stream keeps events (7 days).

One look-up (`get_last_msg`, a JetStream API round trip) on the tenant's subject, then on the subject a
release before tenant tokens used (`result.<task_id>`: docs/operations/upgrades.md), where a result counts
only for the tenant it names: one organisation's task id never finds another's result.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from switchyard.common import subjects, tenants


async def stored(js: JetStreamContext, tenant_id: str, task_id: str) -> RawStreamMsg | None:
    """The tenant's task's result message as the stream keeps it; None when there is none."""
    try:
        return await js.get_last_msg(subjects.STREAM_EVENTS, subjects.result_subject(tenant_id, task_id))
    except NotFoundError:
        pass
    try:
        msg = await js.get_last_msg(subjects.STREAM_EVENTS, subjects.legacy_result_subject(task_id))
    except NotFoundError:
        return None
    return msg if tenants.named_in(msg.data or b"") == tenant_id else None
