"""Events as previous releases put them on the bus, recorded with their code: this release's consumers must
read them during a rolling upgrade (docs/operations/upgrades.md). Recorded, because CI cannot check out
old commits; record the next release's the same way before an event changes.

- 44c1657, the release operators run: taken from the bus of its own `switchyard up` stack under load (the
  rollout rehearsal of 2026-12-07: a chat completion answered by the local model, and a bus task that
  failed `provider_overloaded`), its ids renamed (tasks `task-prev-1`/`-2`, tenant `acme`, user `u1`, key
  `key-prev-1`, events `prev-event-N`), nothing else changed;
- 968de8c, the release before it (a deployment still on it upgrades through 44c1657)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RELEASES = ("44c1657", "968de8c")


def previous_events(release: str = RELEASES[0]) -> list[dict[str, Any]]:
    """[{subject, event}]: each event's subject and its CloudEvent as JSON, as `release` published them."""
    events: list[dict[str, Any]] = json.loads(Path(__file__).with_name(f"events-{release}.json").read_text())
    return events
