"""Core subscriptions refuse what the JetStream server sends them on a client's behalf.

NATS checks who may publish to a subject, but not the subjects the server itself sends to for a client:
a push consumer's deliver subject (nats-server issue 8274), the reply subject of a request to the
JetStream API (a direct get answers with the stored message, byte for byte, wherever the request's reply
subject points). So a user that may write a KV bucket and read it could have the server carry what it
wrote to any core subscriber: billing's RPCs, the ledger's, the gateway's results, chunks and
cancellations. The server marks everything it sends this way, and a publisher cannot forge the marks:
- a push or pull consumer's delivery has a reply subject `$JS.ACK.<stream>...` (every ack policy, ordered
  consumers too), its flow control `$JS.FC.<stream>...`;
- a direct get's answer has a `Nats-Stream` header, a consumer's heartbeat or a pull's end a `Status`
  header, and neither has a reply subject; other API answers are JSON of the server's own, no event.

Such an answer whose reply subject the events stream stores is stored there as an event (JetStream
deliveries are not): `stored_answer` finds it, and the stream's readers dead-letter it (bus.subscribe) or
skip it, never taking it for a publisher's event.

So an RPC is answered only when its reply subject is the inbox of a user allowed to call it (`_INBOX_<user>`,
bus_auth; any `_INBOX` when the service connects with no user), and every other core subscription drops
a message marked so. Each refusal is counted and logged with its subject, never its payload.
"""

from __future__ import annotations

import logging
from typing import Protocol

from prometheus_client import Counter

from switchyard.common import subjects
from switchyard.common.bus_auth import INBOX_PREFIX, NatsCredentials

log = logging.getLogger(__name__)

OPERATOR = "operator"
# Who may call each RPC (the gateway answers the public API with them); `operator` may do anything.
RPC_CALLERS: dict[str, tuple[str, ...]] = {
    subjects.BILLING_RPC_PREFIX: ("gateway",),
    subjects.LEDGER_RPC_PREFIX: ("gateway",),
}
# The subscriptions' names in the counter (one per task each, so the task's own subject is only logged).
RESULTS = f"{subjects.RESULT_PREFIX}.*.*"  # switchyard.result.<tenant token>.<task id>
CHUNKS = f"{subjects.CHUNK_PREFIX}.*.*"
JETSTREAM_REPLY = "$JS."
STREAM_HEADER = "Nats-Stream"
STATUS_HEADER = "Status"

REFUSED = Counter(
    "switchyard_bus_refused_messages_total",
    "Messages a core subscription refused: sent by the JetStream server on a client's behalf, or an RPC "
    "whose reply is no allowed caller's inbox",
    ["subscription", "reason"],
)


class Delivered(Protocol):
    """What the guard reads of a message (nats-py's `Msg`)."""

    @property
    def subject(self) -> str: ...
    @property
    def reply(self) -> str: ...
    @property
    def headers(self) -> dict[str, str] | None: ...


def rpc_reply_prefixes(rpc_prefix: str, me: NatsCredentials | None) -> tuple[str, ...]:
    """The reply-subject prefixes an RPC under `rpc_prefix` is answered for, for a service connected as
    `me`: its callers' and the operator's inboxes, and its own user's (docker compose and Kubernetes give
    every service one user); with no user (a bus without authorization), any `_INBOX`."""
    if me is None:
        return (INBOX_PREFIX,)
    users = (*RPC_CALLERS[rpc_prefix], OPERATOR, me.user)
    # and `_INBOX.`: an operator's tool that sets no prefix of its own (only the gateway and the operator
    # may publish the RPCs' subjects; what the server carries has a `$JS.` reply or none, never an inbox)
    return (*dict.fromkeys(f"{INBOX_PREFIX}_{user}." for user in users), f"{INBOX_PREFIX}.")


def server_sent(msg: Delivered) -> str | None:
    """Why `msg` is the JetStream server's on a client's behalf, not a publisher's (None: it is not)."""
    if msg.reply.startswith(JETSTREAM_REPLY):
        return "jetstream_delivery"
    headers = msg.headers
    if headers:
        if STREAM_HEADER in headers:
            return "stream_read_reply"
        if STATUS_HEADER in headers:
            return "status_message"
    return None


def stored_answer(headers: dict[str, str] | None) -> bool:
    """True when a stored message with these headers is a direct get's answer the stream caught (its
    reply subject was one the stream stores), not a publish."""
    return headers is not None and STREAM_HEADER in headers


def refused_rpc(msg: Delivered, allowed: tuple[str, ...], *, subscription: str) -> bool:
    """True (counted, logged) when `msg` is no allowed caller's request: its reply is not one of the
    `allowed` inbox prefixes (a JetStream delivery's is `$JS.ACK...`, a direct get's answer has none)."""
    if msg.reply.startswith(allowed):
        return False
    reason = server_sent(msg) or ("no_reply" if not msg.reply else "foreign_inbox")
    _note(msg, subscription, reason)
    return True


def refused(msg: Delivered, *, subscription: str) -> bool:
    """True (counted, logged) when `msg`, heard on a core subscription that is no RPC, was sent by the
    JetStream server on a client's behalf."""
    reason = server_sent(msg)
    if reason is None:
        return False
    _note(msg, subscription, reason)
    return True


def _note(msg: Delivered, subscription: str, reason: str) -> None:
    REFUSED.labels(subscription, reason).inc()
    log.warning(
        "refused a message on %s (%s): %s, reply subject %r",
        msg.subject,
        subscription,
        reason,
        msg.reply[:120],
    )
