"""Urgency in [0, 1]: the request's metadata (priority, deadline) sets the level, the text nudges it.

Metadata wins: content cues move urgency by at most CUE_STEP, so a prompt saying "URGENT" cannot jump
the queue over a tenant's explicit `low` priority, while a deadline that is close always raises it.
"""

from __future__ import annotations

from datetime import datetime

from switchyard.classifier import casefold

PRIORITY_BASE = {"low": 0.15, "normal": 0.4, "high": 0.75}
CUE_STEP = 0.15
# (seconds left, at least this urgent): the closer the deadline, the higher the floor.
DEADLINE_FLOORS = ((0.0, 1.0), (10.0, 0.95), (60.0, 0.85), (600.0, 0.65), (3600.0, 0.5))

# Searched in the folded text (casefold.py): what IGNORECASE would find, faster.
_URGENT = casefold.pattern(
    r"\b(?:urgent(?:ly)?|asap|a\.s\.a\.p|immediately|right now|right away|emergency|critical|"
    r"as soon as possible|time[- ]sensitive|deadline (?:is )?(?:today|tonight|in \d+)|"
    r"(?:production|prod|site|server|service) is down|outage|sev ?[01]|p0)\b"
)
_CALM = casefold.pattern(
    r"\b(?:no rush|no hurry|whenever|when you (?:have|get) (?:a chance|time)|low priority|not urgent|"
    r"at your leisure|take your time)\b"
)
_SCAN_CHARS = 4000


def deadline_floor(deadline: datetime | None, now: datetime) -> float:
    if deadline is None:
        return 0.0
    if deadline.tzinfo is None and now.tzinfo is not None:
        deadline = deadline.replace(tzinfo=now.tzinfo)
    left = (deadline - now).total_seconds()
    for limit, floor in DEADLINE_FLOORS:
        if left <= limit:
            return floor
    return 0.0


def content_cue(text: str) -> float:
    """+1 for urgent wording, -1 for explicitly relaxed wording, 0 otherwise (both ends of long text)."""
    if len(text) > 2 * _SCAN_CHARS:
        text = text[:_SCAN_CHARS] + "\n" + text[-_SCAN_CHARS:]
    text = casefold.fold(text)
    if _URGENT.search(text):
        return 1.0
    if _CALM.search(text):
        return -1.0
    return 0.0


def urgency(*, priority: str, deadline: datetime | None, text: str, now: datetime) -> float:
    level = PRIORITY_BASE.get(priority, PRIORITY_BASE["normal"]) + CUE_STEP * content_cue(text)
    level = max(level, deadline_floor(deadline, now))
    return round(min(max(level, 0.0), 1.0), 4)
