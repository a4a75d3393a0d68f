"""Reading and replaying the dead-letter stream.

A dead letter is the original message, byte for byte, with `Switchyard-Dlq-*` headers saying which service
rejected it, why, from which subject and stream sequence (see `bus.dead_letter`). Once the cause is fixed
(a consumer bug, a provider outage that outlasted the redeliveries), an operator replays it: the original
bytes are published again on the original subject with a new `Nats-Msg-Id` (the old one may still be in
the stream's duplicate window), then the dead letter is deleted so it cannot be replayed twice by mistake.
A message several consumers of its subject rejected (a bad task: the classifier and the audit) is several
dead letters of one stored message: it is replayed once for all of them, and they all go. Consumers are
idempotent on the event id, so a consumer that had already handled the event ignores it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import orjson
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from switchyard.common import subjects
from switchyard.common.envelope import CONTENT_TYPE, MSG_ID

REPLAY_HEADER = "Switchyard-Replay-Of"
# a dead letter without its message (too large to copy with these headers): the message's size
OMITTED_HEADER = "Switchyard-Dlq-Body-Omitted"


class DeadLetterNotFound(LookupError):
    pass


class DeadLetterUnchecked(DeadLetterNotFound):
    """A dead letter whose bytes are not (or can no longer be shown to be) the event the events stream
    holds at its sequence, on its subject: not replayed unless asked (`unchecked`)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    seq: int
    service: str
    code: str
    reason: str
    original_subject: str
    original_seq: int
    deliveries: int
    time: datetime | None
    data: bytes
    headers: dict[str, str]
    # the durable consumer that gave it up: `switchyard_dead_letters_total`'s label (absent before 2026-12-07)
    consumer: str = ""

    @property
    def event_id(self) -> str | None:
        return self._event_field("id")

    @property
    def event_type(self) -> str | None:
        return self._event_field("type")

    def _event_field(self, name: str) -> str | None:
        try:
            doc = orjson.loads(self.data)
        except orjson.JSONDecodeError:
            return None
        value = doc.get(name) if isinstance(doc, dict) else None
        return value if isinstance(value, str) else None

    def summary(self) -> dict[str, object]:
        """What an operator sees in a listing (never the body: it may hold a prompt)."""
        return {
            "seq": self.seq,
            "service": self.service,
            "consumer": self.consumer,
            "code": self.code,
            "reason": self.reason,
            "subject": self.original_subject,
            "stream_seq": self.original_seq,
            "deliveries": self.deliveries,
            "time": self.time.isoformat() if self.time else None,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "bytes": len(self.data),
        }


def _from_raw(
    seq: int, subject: str, data: bytes | None, headers: dict[str, str] | None, time: object
) -> DeadLetter:
    h = headers or {}
    service = h.get("Switchyard-Dlq-Service") or subject.removeprefix(subjects.DLQ_PREFIX + ".")
    return DeadLetter(
        seq=seq,
        service=service,
        code=h.get("Switchyard-Dlq-Code", ""),
        reason=h.get("Switchyard-Dlq-Reason", ""),
        original_subject=h.get("Switchyard-Dlq-Subject", ""),
        original_seq=int(h.get("Switchyard-Dlq-Stream-Seq", "0") or 0),
        deliveries=int(h.get("Switchyard-Dlq-Deliveries", "0") or 0),
        time=time if isinstance(time, datetime) else None,
        data=data or b"",
        headers=dict(h),
        consumer=h.get("Switchyard-Dlq-Consumer", ""),
    )


async def get(js: JetStreamContext, seq: int) -> DeadLetter:
    try:
        raw = await js.get_msg(subjects.STREAM_DLQ, seq=seq)
    except NotFoundError as exc:
        raise DeadLetterNotFound(f"no dead letter with sequence {seq}") from exc
    return _from_raw(raw.seq or seq, raw.subject or "", raw.data, raw.headers, raw.time)


async def scan(
    js: JetStreamContext, *, service: str | None = None, start_seq: int = 1, limit: int | None = None
) -> AsyncIterator[DeadLetter]:
    """Dead letters in stream order from `start_seq`, optionally only those one service rejected."""
    subject = subjects.dlq_subject(service) if service else f"{subjects.DLQ_PREFIX}.>"
    seq, found = max(start_seq, 1), 0
    while limit is None or found < limit:
        try:
            raw = await js.get_msg(subjects.STREAM_DLQ, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return
        assert raw.seq is not None
        yield _from_raw(raw.seq, raw.subject or "", raw.data, raw.headers, raw.time)
        found += 1
        seq = raw.seq + 1


@dataclass(frozen=True, slots=True)
class Replayed:
    letter: DeadLetter
    # The other dead letters of the same stored message (another consumer of its subject rejected it too):
    # the one publish reaches their consumers as well, so they are replayed with it (and deleted).
    with_it: tuple[DeadLetter, ...]
    published: bool  # False: the same stored message was replayed within the duplicate window already


async def _check_stored(js: JetStreamContext, letter: DeadLetter) -> None:
    """DeadLetterUnchecked unless the letter is the event stored at its sequence of the events stream."""
    where = f"sequence {letter.original_seq} of {subjects.STREAM_EVENTS}"
    unless = "; replay it with --unchecked if you trust its bytes (`dlq show SEQ --body`)"
    if letter.original_seq <= 0:
        raise DeadLetterUnchecked(f"dead letter {letter.seq} names no event of the events stream{unless}")
    try:
        stored = await js.get_msg(subjects.STREAM_EVENTS, letter.original_seq)
    except NotFoundError:
        raise DeadLetterUnchecked(
            f"dead letter {letter.seq}: its event ({where}) is no longer in the events stream (expired: "
            f"it keeps events 7 days; or erased), so its bytes cannot be checked{unless}"
        ) from None
    if stored.subject != letter.original_subject or (stored.data or b"") != letter.data:
        raise DeadLetterUnchecked(
            f"dead letter {letter.seq} is not the event stored at {where} (another subject or other bytes): "
            "not replayed; a user that may file dead letters but not publish that event may have made it"
        )


def _same_original(a: DeadLetter, b: DeadLetter) -> bool:
    return a.original_seq > 0 and (a.original_subject, a.original_seq) == (b.original_subject, b.original_seq)


async def replay(
    js: JetStreamContext,
    seq: int,
    *,
    keep: bool = False,
    letters: list[DeadLetter] | None = None,
    unchecked: bool = False,
) -> Replayed:
    """Publishes a dead letter's original bytes on its original subject, once for every dead letter of that
    stored message (each consumer of the subject that rejected it hears the one publish), then deletes
    them (unless `keep`). `letters`: the dead-letter stream as read already (else it is read here).

    Only the event the events stream holds at the letter's sequence, on its subject, byte for byte, is
    sent (`DeadLetterUnchecked` else; `unchecked` sends it anyway): a dead letter says its own subject,
    and the users that may file one (each service its own, the executors any service's: stranded.py)
    could otherwise have the operator, who may publish anything, send an event they may not (an
    `organization.erased` filed as billing's)."""
    letter = await get(js, seq)
    if not letter.original_subject:
        raise DeadLetterNotFound(f"dead letter {seq} does not say where it came from; it cannot be replayed")
    if OMITTED_HEADER in letter.headers:
        raise DeadLetterNotFound(
            f"dead letter {seq} holds no copy of its message ({letter.headers[OMITTED_HEADER]} bytes, too "
            "large for the bus with a dead letter's headers); it cannot be replayed"
        )
    if not unchecked:
        await _check_stored(js, letter)
    found = letters if letters is not None else [x async for x in scan(js)]
    twins = tuple(x for x in found if x.seq != seq and _same_original(x, letter))
    # One id per stored message: a second replay of it within the duplicate window (its other dead letter,
    # another operator's) is dropped by the server. A message stored again gets a new sequence, so a
    # replayed event dead-lettered again is replayed under a new id. Its bytes' digest in it: another user
    # of the stream, who can tell its sequence numbers (its own publishes' acks) but not read the message,
    # cannot publish under the id first and have the replay dropped while the dead letter goes.
    bytes_id = hashlib.sha256(letter.data).hexdigest()[:16]
    msg_id = (
        f"replay-of-{letter.original_seq}-{bytes_id}"
        if letter.original_seq > 0
        else f"replay-{seq}-{bytes_id}"
    )
    ack = await js.publish(
        letter.original_subject,
        letter.data,
        headers={
            MSG_ID: msg_id,
            "content-type": letter.headers.get("content-type", CONTENT_TYPE),
            REPLAY_HEADER: str(seq),
        },
        timeout=5.0,
    )
    if not keep:
        for gone in (letter, *twins):
            with contextlib.suppress(NotFoundError):  # deleted meanwhile (another replay of it)
                await js.delete_msg(subjects.STREAM_DLQ, gone.seq)
    return Replayed(letter, twins, published=not ack.duplicate)
