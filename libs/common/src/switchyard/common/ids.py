"""Identifiers. Event ids derived from their cause are deterministic, so a redelivered input republishes
the same output id and JetStream's duplicate window (plus each consumer's idempotency) drops it."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6f1c1a3e-5d0a-4b7e-9c55-2f0b8f1d7a11")


def new_id() -> str:
    return uuid.uuid4().hex


def derived_id(cause_id: str, step: str) -> str:
    return uuid.uuid5(_NAMESPACE, f"{cause_id}:{step}").hex
