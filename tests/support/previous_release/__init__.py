"""Events as the previous release (968de8c) put them on the bus, recorded with its code: this release's
consumers must read them during a rolling upgrade (docs/operations/upgrades.md). Recorded, because CI
cannot check out old commits; record the next release's the same way before an event changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RECORDED = Path(__file__).with_name("events-968de8c.json")


def previous_events() -> list[dict[str, Any]]:
    """[{subject, event}]: each event's subject and its CloudEvent as JSON."""
    events: list[dict[str, Any]] = json.loads(RECORDED.read_text())
    return events
