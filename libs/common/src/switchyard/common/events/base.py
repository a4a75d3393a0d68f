from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

# Token counts and costs have ceilings far above any real request, so that a corrupt or hostile event
# cannot overflow a database column or a sum (and stays within I-JSON's exact integers).
MAX_TOKENS = 10**9
TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
Money = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]


class EventPayload(BaseModel):
    """Base of every event payload: the CloudEvents `type` is `EVENT_TYPE`, versioned (`.v1`).

    Unknown fields are ignored so that additive changes by a newer producer never break an older consumer.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    EVENT_TYPE: ClassVar[str]
    SUBJECT: ClassVar[str | None] = None
