"""Results and chunks on the subjects of the release before tenant tokens (44c1657) as well, for one release:
a rolling upgrade from it loses no request (docs/operations/upgrades.md, "Tenant tokens in result and chunk
subjects"). `SWITCHYARD_LEGACY_SUBJECTS` (on in this release) turns it on; drop this module in the next.

A 44c1657 gateway waits for a task's result and chunks on core subscriptions to `switchyard.result.<task_id>`
and `switchyard.chunk.<task_id>`; its executor, router and classifier publish there. So:
- a result stored on `result.<token>.<task_id>` is then core-published on `result.<task_id>`, the same
  bytes with the same `Nats-Msg-Id` (`copy`, once the stream acked the first): a previous gateway hears it;
  the events stream, whose subjects take it too, drops it as a duplicate of the stored one (within its
  duplicate window), so billing and audit of either release never read it;
- a chunk (core NATS, never stored) goes on its new subject, then on the old one (`both`);
- a gateway also listens on the old subjects for its tasks (`listen`), and so hears a previous executor's
  answer. What `copy` and `both` sent there carries COPY_HEADER: a gateway of this release skips it, having
  heard the same message on the new subject already.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from switchyard.common import subjects

log = logging.getLogger(__name__)

COPY_HEADER = "Switchyard-Copy-Of"  # its value: the subject the message was first published on
Publish = Callable[[str, bytes], Awaitable[None]]
Handler = Callable[[Msg], Awaitable[None]]


def previous_subject(subject: str) -> str | None:
    """`switchyard.result.<task_id>` for `switchyard.result.<token>.<task_id>` (`chunk` alike); None for
    any other subject."""
    for prefix in (subjects.RESULT_PREFIX, subjects.CHUNK_PREFIX):
        _token, dot, task_id = subject.removeprefix(f"{prefix}.").partition(".")
        if subject.startswith(f"{prefix}.") and dot and task_id and "." not in task_id:
            return f"{prefix}.{task_id}"
    return None


async def copy(nc: Client, subject: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    """Core-publishes what was published on `subject` (a result or chunk subject) on its previous subject
    too, marked as a copy; nothing for another subject."""
    previous = previous_subject(subject)
    if previous is None:
        return
    try:
        await nc.publish(previous, body, headers={**(headers or {}), COPY_HEADER: subject})
    except nats.errors.Error as exc:  # the first went out: a previous gateway waits out its timeout
        log.warning("no copy of %s on %s: %r", subject, previous, exc)


def both(nc: Client) -> Publish:
    """Publishes a chunk on its subject, then a copy on its previous one."""

    last: list[tuple[str, str | None, dict[str, str]]] = []  # a stream's one subject, worked out once

    async def publish(subject: str, body: bytes) -> None:
        await nc.publish(subject, body)
        if not last or last[0][0] != subject:
            last[:] = [(subject, previous_subject(subject), {COPY_HEADER: subject})]
        _, previous, headers = last[0]
        if previous is not None:
            await nc.publish(previous, body, headers=headers)

    return publish


def copied(msg: Msg) -> bool:
    """`msg` is a copy this release sent on a previous subject (heard on its own subject already)."""
    return bool(msg.headers) and COPY_HEADER in msg.headers  # type: ignore[operator]


class Listening:
    """A task's subscriptions: its subject's, and its previous subject's where it listens there too (until
    the task's own subject carries something: a replica of this release answers, whose copies would only
    be skipped there)."""

    def __init__(self, sub: Subscription) -> None:
        self._subs = [sub]

    def also(self, previous: Subscription) -> None:
        self._subs.append(previous)

    async def drop_previous(self) -> None:
        if len(self._subs) > 1:
            await self._subs.pop().unsubscribe()

    async def unsubscribe(self) -> None:
        while self._subs:
            await self._subs.pop().unsubscribe()


async def listen(
    nc: Client, subject: str, cb: Handler, *, previous: bool, tenant_id: str | None = None
) -> Listening:
    """Subscribes `cb` to `subject` (a task's result or chunk subject) and, with `previous`, to its previous
    subject, where it gets what a previous release's replica published (never this release's copies); with
    `tenant_id` (a result), only an event there that names that tenant (the old subject names none)."""
    if not previous or (legacy := previous_subject(subject)) is None:
        return Listening(await nc.subscribe(subject, cb=cb))

    async def on_subject(msg: Msg) -> None:
        await listening.drop_previous()
        await cb(msg)

    async def on_previous(msg: Msg) -> None:
        if not copied(msg) and (tenant_id is None or _names(msg.data, tenant_id)):
            await cb(msg)

    listening = Listening(await nc.subscribe(subject, cb=on_subject))
    listening.also(await nc.subscribe(legacy, cb=on_previous))
    return listening


def _names(raw: bytes, tenant_id: str) -> bool:
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    data = event.get("data") if isinstance(event, dict) else None
    return isinstance(data, dict) and data.get("tenant_id") == tenant_id
