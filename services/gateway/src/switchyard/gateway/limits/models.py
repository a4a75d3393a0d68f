"""What is limited, and by how much: the product plan's defaults, overridable by settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["requests", "tokens", "concurrency", "counts"]

MINUTE_S = 60
DAY_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class Limits:
    user_requests_per_min: int = 100
    user_tokens_per_day: int = 1_000_000
    org_requests_per_min: int = 1_000
    org_tokens_per_day: int = 10_000_000
    org_concurrent_tasks: int = 20
    global_requests_per_min: int = 10_000
    # Token counts (`/v1/messages/count_tokens`) run no task and take none of the above; their own window
    # keeps a key from spending the gateway's CPU on them (Claude Code sends a few dozen at start-up).
    user_counts_per_min: int = 600


@dataclass(frozen=True, slots=True)
class Check:
    """One counter a request must fit in: `delta` more must stay within `limit` until `reset_at`."""

    scope: str  # "user", "org" or "global"
    kind: Kind
    key: str
    limit: int
    delta: int
    reset_at: float | None  # epoch seconds the window ends; None: no window (concurrency)


def window(now: float, length_s: int) -> tuple[int, float]:
    """(the window's index, when it ends) for fixed windows aligned on the epoch (UTC days, minutes)."""
    index = int(now // length_s)
    return index, float((index + 1) * length_s)


def checks(
    limits: Limits,
    *,
    now: float,
    tenant_id: str,
    subject: str,
    tokens: int,
    global_requests_per_min: int,
) -> list[Check]:
    """The counters of one request, broadest first (so a refusal names the widest limit it hit)."""
    minute, minute_end = window(now, MINUTE_S)
    day, day_end = window(now, DAY_S)
    return [
        Check("global", "requests", f"req.global.{minute}", global_requests_per_min, 1, minute_end),
        Check("org", "requests", f"req.org.{tenant_id}.{minute}", limits.org_requests_per_min, 1, minute_end),
        Check(
            "user", "requests", f"req.user.{subject}.{minute}", limits.user_requests_per_min, 1, minute_end
        ),
        Check("org", "tokens", f"tok.org.{tenant_id}.{day}", limits.org_tokens_per_day, tokens, day_end),
        Check("user", "tokens", f"tok.user.{subject}.{day}", limits.user_tokens_per_day, tokens, day_end),
        Check("org", "concurrency", f"conc.org.{tenant_id}", limits.org_concurrent_tasks, 1, None),
    ]


def count_check(limits: Limits, *, now: float, subject: str) -> Check:
    """The one counter a token count takes."""
    minute, minute_end = window(now, MINUTE_S)
    return Check("user", "counts", f"cnt.user.{subject}.{minute}", limits.user_counts_per_min, 1, minute_end)
