from __future__ import annotations

from pydantic import Field
from switchyard.common.config import CommonSettings


class AuditSettings(CommonSettings):
    audit_workers: int = Field(default=64, ge=1, description="events handled concurrently (batched appends)")
    audit_max_batch: int = Field(default=500, ge=1, description="most entries appended in one transaction")
