from __future__ import annotations

from pathlib import Path

from switchyard.billing.models import BillingBase
from switchyard.common.db import Migrations


def migrations() -> Migrations:
    return Migrations(
        service="billing",
        script_location=Path(__file__).with_name("migrations"),
        metadata=BillingBase.metadata,
    )
