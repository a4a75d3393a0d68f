from __future__ import annotations

from pathlib import Path

from switchyard.audit.models import AuditBase
from switchyard.common.db import Migrations


def migrations() -> Migrations:
    return Migrations(
        service="audit",
        script_location=Path(__file__).with_name("migrations"),
        metadata=AuditBase.metadata,
    )
