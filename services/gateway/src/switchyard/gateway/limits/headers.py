"""The `x-ratelimit-*` headers as OpenAI sends them (limit, remaining, reset as a duration like `6m0s`)."""

from __future__ import annotations

import math

from switchyard.gateway.limits.models import Check


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{max(int(seconds * 1000), 1)}ms"
    seconds = math.ceil(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def ratelimit_headers(seen: list[tuple[Check, int]], *, now: float) -> dict[str, str]:
    """For requests and tokens, the counter with the least room left: what the client will hit first."""
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        mine = [(c, used) for c, used in seen if c.kind == kind]
        if not mine:
            continue
        check, used = min(mine, key=lambda cu: cu[0].limit - cu[1])
        headers[f"x-ratelimit-limit-{kind}"] = str(check.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(check.limit - used, 0))
        if check.reset_at is not None:
            headers[f"x-ratelimit-reset-{kind}"] = duration(check.reset_at - now)
    return headers
