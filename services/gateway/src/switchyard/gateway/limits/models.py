"""What is limited, and by how much: the product plan's defaults, overridable by settings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from switchyard.gateway.key_policy import KeyPolicy

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
    # The share of `org_concurrent_tasks` batch lines leave free for interactive requests (`batch_slots`).
    batch_interactive_share: float = 0.5

    def batch_slots(self) -> int:
        """How many of an organisation's concurrent tasks its batch lines may hold together: all but the
        interactive share (rounded up), and at least one, so a batch still runs under a limit of 1."""
        org = self.org_concurrent_tasks
        return max(org - math.ceil(org * self.batch_interactive_share), 1)


@dataclass(frozen=True, slots=True)
class Check:
    """One counter a request must fit in: `delta` more must stay within `limit` until `reset_at`."""

    scope: str  # "user", "org", "global", "key" or "minter" (a key that minted the caller's)
    kind: Kind
    key: str
    limit: int
    delta: int
    reset_at: float | None  # epoch seconds the window ends; None: no window (concurrency)
    per: str = ""  # the window, for a refusal's message ("tokens per min"); "": the kind's usual one


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
    batch: bool = False,
    key: tuple[str, KeyPolicy] | None = None,
    minters: Sequence[tuple[str, KeyPolicy]] = (),
) -> list[Check]:
    """The counters of one request, broadest first (so a refusal names the widest limit it hit). A batch
    line also takes one of its organisation's batch slots: batch lines never hold more than those, so the
    rest of the organisation's concurrency stays free for its interactive requests, on every replica. A
    `key` (its id and policy) with limits of its own adds its requests and tokens per minute, and so does
    each of the keys that minted it (`minters`: a key's rate limits bound what the keys it minted do
    together, as its budget does)."""
    minute, minute_end = window(now, MINUTE_S)
    day, day_end = window(now, DAY_S)
    counters = [
        Check("global", "requests", f"req.global.{minute}", global_requests_per_min, 1, minute_end),
        Check("org", "requests", f"req.org.{tenant_id}.{minute}", limits.org_requests_per_min, 1, minute_end),
        Check(
            "user", "requests", f"req.user.{subject}.{minute}", limits.user_requests_per_min, 1, minute_end
        ),
        Check("org", "tokens", f"tok.org.{tenant_id}.{day}", limits.org_tokens_per_day, tokens, day_end),
        Check("user", "tokens", f"tok.user.{subject}.{day}", limits.user_tokens_per_day, tokens, day_end),
        Check("org", "concurrency", f"conc.org.{tenant_id}", limits.org_concurrent_tasks, 1, None),
    ]
    if batch:
        counters.append(
            Check("org batches", "concurrency", f"conc.batch.{tenant_id}", limits.batch_slots(), 1, None)
        )
    if key is not None:
        counters += key_checks(*key, minute=minute, minute_end=minute_end, tokens=tokens)
    for minter, policy in minters:
        counters += key_checks(
            minter, policy, minute=minute, minute_end=minute_end, tokens=tokens, scope="minter"
        )
    return counters


def key_checks(
    key_id: str, policy: KeyPolicy, *, minute: int, minute_end: float, tokens: int, scope: str = "key"
) -> list[Check]:
    """A key's own requests and tokens per minute (`key_policy`), those it sets (`scope` "minter": a key
    that minted the caller's, counted against by it)."""
    counters = []
    if policy.rpm_limit is not None:
        counters.append(
            Check(scope, "requests", f"req.key.{key_id}.{minute}", policy.rpm_limit, 1, minute_end)
        )
    if policy.tpm_limit is not None:
        counters.append(
            Check(
                scope,
                "tokens",
                f"tok.key.{key_id}.{minute}",
                policy.tpm_limit,
                tokens,
                minute_end,
                "tokens per min",
            )
        )
    return counters


def count_check(limits: Limits, *, now: float, subject: str) -> Check:
    """The one counter a token count takes."""
    minute, minute_end = window(now, MINUTE_S)
    return Check("user", "counts", f"cnt.user.{subject}.{minute}", limits.user_counts_per_min, 1, minute_end)
