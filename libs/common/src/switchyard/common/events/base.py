from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class EventPayload(BaseModel):
    """Base of every event payload: the CloudEvents `type` is `EVENT_TYPE`, versioned (`.v1`).

    Unknown fields are ignored so that additive changes by a newer producer never break an older consumer.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    EVENT_TYPE: ClassVar[str]
    SUBJECT: ClassVar[str | None] = None
