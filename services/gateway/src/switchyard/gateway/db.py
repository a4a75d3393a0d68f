from __future__ import annotations

from pathlib import Path

from switchyard.common.db import Migrations
from switchyard.gateway.models import GatewayBase


def migrations() -> Migrations:
    return Migrations(
        service="gateway",
        script_location=Path(__file__).with_name("migrations"),
        metadata=GatewayBase.metadata,
    )
