"""Identifiers.

An event a service publishes because of another (a task's `classified`, `routed`, `result`, its calls,
its usage...) takes an id derived from its cause, so a redelivered input republishes the same output id
and JetStream's duplicate window (plus each consumer's idempotency) drops it. Such an id is
`EventIdKey.event_id`: HMAC-SHA256, under a secret every service of a deployment shares and no bus
client has (`event_id_key.py`), of the tenant, the cause and the step. Scoped to the tenant, so two
organisations whose systems both name a task `job-1` get ids of their own (the stream would drop the
second's events as copies); keyed, so no bus client can work out its own tasks' ids and publish first
under them (the stream would drop the real event: publisher.py).

`derived_id` (unkeyed) is for what is stored under an id (idempotency claims, batch lines): such an id
must not change across an upgrade, and none of them is an event's id.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

import orjson

_NAMESPACE = uuid.UUID("6f1c1a3e-5d0a-4b7e-9c55-2f0b8f1d7a11")
MIN_SECRET_BYTES = 16


def new_id() -> str:
    return uuid.uuid4().hex


def derived_id(cause_id: str, step: str) -> str:
    """A stored key derived from its cause (not an event id: `EventIdKey.event_id`)."""
    return uuid.uuid5(_NAMESPACE, f"{cause_id}:{step}").hex


class EventIdKey:
    """The secret derived event ids are keyed with; its repr never shows it."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"an event id secret needs at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret

    def __repr__(self) -> str:
        return "EventIdKey('**********')"

    def event_id(self, cause_id: str, step: str, *, tenant_id: str) -> str:
        """The id of the event `step` of `cause_id` for `tenant_id` (32 hex digits, like `new_id`)."""
        message = orjson.dumps([tenant_id, cause_id, step])  # unambiguous whatever the strings hold
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]
