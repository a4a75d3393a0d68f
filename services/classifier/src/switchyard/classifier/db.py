"""The classifier's tables (the opt-in outcome store) for `switchyard db upgrade`, as the other owners'."""

from __future__ import annotations

from pathlib import Path

from switchyard.classifier.outcomes.models import ClassifierBase
from switchyard.common.db import Migrations


def migrations() -> Migrations:
    return Migrations(
        service="classifier",
        script_location=Path(__file__).with_name("outcomes") / "migrations",
        metadata=ClassifierBase.metadata,
    )
