"""Publishing CloudEvents to JetStream: the event id as `Nats-Msg-Id` (the server de-duplicates a retried
publish), transient failures retried, a message the server would refuse for its size refused here first.
`bus.EventPublisher` is this class (every service imports it from there).

The events stream de-duplicates by `Nats-Msg-Id` whoever published. The ids the services derive from
their causes (`derived_id`) are keyed with the deployment's secret (`ids.EventIdKey`, event_id_key.py) and
scoped to the task's tenant: no bus client can work them out, so none can publish first, on a subject it
may (its tenant's `task.feedback.<token>`), under the id its task's classification, route, result or usage
will have (the stream would drop the real event as a duplicate: never routed, or never charged nor
recorded), and two organisations' tasks of one id get ids of their own. What a client still chooses is
its own events' ids (its submissions, cancellations, ratings): one reused across organisations is
de-duplicated, and its publisher's ack says `duplicate: true` (README, "The bus contract"). So where an
event is charged (the executor's results and calls, the gateway's cached answers: `checks_duplicates`,
users that may read the events stream), a duplicate ack is still checked against the message it names
(one message get, only on a duplicate): one on another subject is another publisher's, and the event is
published again under a new id; the ids themselves no longer let a bus client make one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats
from nats.js import JetStreamContext, api
from nats.js.errors import NoStreamResponseError, NotFoundError

from switchyard.common import ids, legacy_subjects, metrics, subjects, tracing
from switchyard.common.envelope import CONTENT_TYPE, MSG_ID, encode
from switchyard.common.errors import EventTooLarge
from switchyard.common.events.base import EventPayload

log = logging.getLogger(__name__)

PUBLISH_ATTEMPTS = 8
PUBLISH_TIMEOUT_S = 5.0  # each attempt's wait for the stream's ack
SEND_ACK_TIMEOUT_S = 5.0
# The wait of `confirm`: one last publish under the event's id, after every attempt's ack was lost.
CONFIRM_TIMEOUT_S = 5.0


class EventPublisher:
    """Publishes CloudEvents to JetStream with `Nats-Msg-Id` = event id, retrying transient failures. With
    `legacy_subjects`, a result, once stored, is copied to its subject of the release before tenant tokens
    (`legacy_subjects.copy`: its gateways hear it there; the stream drops the copy as a duplicate)."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        source: str,
        legacy_subjects: bool = False,
        checks_duplicates: bool = False,
        id_key: ids.EventIdKey | None = None,
    ) -> None:
        self._js = js
        self.source = source
        self.legacy_subjects = legacy_subjects
        self.checks_duplicates = checks_duplicates
        self._id_key = id_key

    def derived_id(self, cause_id: str, step: str, *, tenant_id: str) -> str:
        """The id of the event `step` of `cause_id` for `tenant_id`: keyed with the deployment's secret
        (`ids.EventIdKey`), which every service is given; a publisher made without one (a tool, a test)
        derives it scoped to the tenant but unkeyed."""
        if self._id_key is not None:
            return self._id_key.event_id(cause_id, step, tenant_id=tenant_id)
        return ids.derived_id(f"{tenant_id}\n{cause_id}", step)

    async def publish(
        self,
        payload: EventPayload,
        *,
        subject: str | None = None,
        event_id: str | None = None,
        tenant_id: str | None = None,
        event_subject: str | None = None,
        traceparent: str | None = None,
        data: bytes | None = None,
    ) -> str:
        """`data`: the payload as `envelope.written` wrote it already (a large task, written once)."""
        target, eid, body = self._encode(
            payload, subject, event_id, tenant_id, event_subject, traceparent, data=data
        )
        ack = await self.publish_raw(target, body, msg_id=eid)
        return await self._settled(
            ack,
            payload,
            target,
            eid,
            tenant_id=tenant_id,
            event_subject=event_subject,
            traceparent=traceparent,
            data=data,
        )

    async def _settled(
        self,
        ack: api.PubAck,
        payload: EventPayload,
        subject: str,
        eid: str,
        *,
        tenant_id: str | None,
        event_subject: str | None,
        traceparent: str | None,
        data: bytes | None = None,
    ) -> str:
        """The id the event is stored under, once `ack` is in: `eid`, or, when another bus user took it
        first (`_taken`), the new id it is published again under."""
        if ack.duplicate and await self._taken(ack, subject, eid):
            return await self.publish(
                payload,
                subject=subject,
                event_id=ids.new_id(),  # the event's own id too: the ledger keeps one entry per event id
                tenant_id=tenant_id,
                event_subject=event_subject,
                traceparent=traceparent,
                data=data,
            )
        if not ack.duplicate:  # a redelivery's re-publish is stored once, and counted once
            metrics.observe_published(payload)
        return eid

    async def _taken(self, ack: api.PubAck, subject: str, eid: str) -> bool:
        """Whether a duplicate ack names another publisher's message (one on another subject) rather
        than this event's first publish (a redelivery's, another replica's: the same subject, or for a
        result the subject of the release before tenant tokens)."""
        if not self.checks_duplicates or ack.stream != subjects.STREAM_EVENTS:  # others publish only there
            return False
        try:
            stored = await self._js.get_msg(ack.stream, seq=ack.seq)
        except (NotFoundError, nats.errors.Error):  # gone since (its age, an erasure): cannot tell
            return False
        if stored.subject in (subject, legacy_subjects.previous_subject(subject)):
            return False
        log.warning(
            "event id %s on %s was taken first by a message on %s (another bus user's); published under a "
            "new id",
            eid,
            subject,
            stored.subject,
        )
        return True

    async def confirm(
        self, payload: EventPayload, *, event_id: str, tenant_id: str | None, event_subject: str | None
    ) -> bool:
        """Whether the stream holds the event `publish` sent under `event_id` though every ack was lost
        (each attempt's wait ended first): one more publish under that id, waited for CONFIRM_TIMEOUT_S.
        Within the duplicate window a publish under a stored id is dropped (`duplicate: true`: it was
        stored), and a fresh ack says it is stored now; either way it is in the stream once. False when no
        ack comes this time either (nothing said)."""
        target, eid, body = self._encode(payload, None, event_id, tenant_id, event_subject, None)
        hdrs = {MSG_ID: eid, "content-type": CONTENT_TYPE}
        self.check_fits(target, body, hdrs)
        try:
            ack = await self._js.publish(target, body, headers=hdrs, timeout=CONFIRM_TIMEOUT_S)
        except (NoStreamResponseError, nats.errors.TimeoutError, nats.errors.ConnectionReconnectingError):
            return False
        await self._settled(
            ack, payload, target, eid, tenant_id=tenant_id, event_subject=event_subject, traceparent=None
        )
        return True

    async def send(
        self,
        payload: EventPayload,
        *,
        subject: str | None = None,
        event_id: str | None = None,
        tenant_id: str | None = None,
        event_subject: str | None = None,
        traceparent: str | None = None,
    ) -> Callable[[], Awaitable[str]]:
        """Puts the event on the wire now and returns `confirm`, which waits for the stream's ack (and,
        if none comes, publishes it like `publish`: same id, so it is stored once).

        Events sent in turn are stored in that order (one connection, and the server handles a
        connection's messages in order), so a caller can send several and confirm them together: one
        round trip for all of them instead of one each. Until `confirm` returns, nothing says the event
        is stored; a caller acks its own message only after every confirmation."""
        target, eid, body = self._encode(payload, subject, event_id, tenant_id, event_subject, traceparent)
        headers = {MSG_ID: eid, "content-type": CONTENT_TYPE}
        self.check_fits(target, body, headers)
        future: asyncio.Future[api.PubAck] | None
        try:
            future = await self._js.publish_async(target, body, headers=headers)
        except Exception as exc:  # not connected, too many in flight: `confirm` publishes it the slow way
            log.warning("could not send %s at once (%s); publishing it with retries", eid, exc)
            future = None

        async def confirm() -> str:
            ack: api.PubAck | None = None
            if future is not None:
                try:
                    async with asyncio.timeout(SEND_ACK_TIMEOUT_S):
                        ack = await future
                except (TimeoutError, nats.errors.Error) as exc:
                    log.warning("no ack for %s (%s); publishing it again", eid, exc)
            if ack is None:
                ack = await self.publish_raw(target, body, msg_id=eid)
            elif self.legacy_subjects:
                await legacy_subjects.copy(self._js._nc, target, body, headers)
            return await self._settled(
                ack,
                payload,
                target,
                eid,
                tenant_id=tenant_id,
                event_subject=event_subject,
                traceparent=traceparent,
            )

        return confirm

    def _encode(
        self,
        payload: EventPayload,
        subject: str | None,
        event_id: str | None,
        tenant_id: str | None,
        event_subject: str | None,
        traceparent: str | None,
        *,
        data: bytes | None = None,
    ) -> tuple[str, str, bytes]:
        target = subject or type(payload).SUBJECT
        if target is None:
            raise ValueError(f"{type(payload).__name__} has no default subject; pass one")
        if traceparent is None:  # the span this is published in (a consumer's, a request's): tracing.py
            traceparent = tracing.current_traceparent()
        eid, body = encode(
            payload,
            source=self.source,
            event_id=event_id,
            tenant_id=tenant_id,
            subject=event_subject,
            traceparent=traceparent,
            data=data,
        )
        return target, eid, body

    def room(self, headers: dict[str, str]) -> int:
        """The most bytes of body a message with `headers` may carry: the server's `max_payload` (as it
        told this connection) less the headers as nats-py writes them."""
        return self._js._nc.max_payload - header_bytes(headers)

    def check_fits(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        """EventTooLarge for a message the server would refuse by closing the connection."""
        room = self.room(headers)
        if len(body) > room:
            limit = self._js._nc.max_payload
            raise EventTooLarge(
                f"the event on {subject} would be {len(body) + limit - room} bytes with its headers, "
                f"over the bus's max_payload of {limit} bytes"
            )

    async def publish_raw(
        self, subject: str, body: bytes, *, msg_id: str, headers: dict[str, str] | None = None
    ) -> api.PubAck:
        hdrs = {MSG_ID: msg_id, "content-type": CONTENT_TYPE, **(headers or {})}
        self.check_fits(subject, body, hdrs)
        ack = await self._stored(subject, body, hdrs)
        if self.legacy_subjects:  # after the ack: the stream knows the id, and drops the copy
            await legacy_subjects.copy(self._js._nc, subject, body, hdrs)
        return ack

    async def _stored(self, subject: str, body: bytes, hdrs: dict[str, str]) -> api.PubAck:
        delay = 0.05
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                return await self._js.publish(subject, body, headers=hdrs, timeout=PUBLISH_TIMEOUT_S)
            except (NoStreamResponseError, nats.errors.TimeoutError, nats.errors.ConnectionReconnectingError):
                if attempt == PUBLISH_ATTEMPTS:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable: the last attempt returns or raises")


def header_bytes(headers: dict[str, str]) -> int:
    """What nats-py writes of `headers` (`NATS/1.0`, a line each, a blank line), which the server counts
    against `max_payload` with the body."""
    lines = sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())
    return len(b"NATS/1.0\r\n") + lines + 2
