"""Admission against the rate limits and quotas: every counter of a request is taken with
compare-and-set, and given back if any one of them refuses, so a refused request costs nothing."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

from switchyard.gateway.errors import RateLimited, ServiceUnavailable
from switchyard.gateway.limits.control import Control
from switchyard.gateway.limits.counters import CounterContention, Counters
from switchyard.gateway.limits.headers import duration, ratelimit_headers
from switchyard.gateway.limits.models import Check, Limits, checks
from switchyard.gateway.tenants import Principal

log = logging.getLogger(__name__)


@dataclass
class Ticket:
    """An admitted request: its headers, and what to give back when it ends."""

    counters: Counters
    tokens_reserved: int
    token_checks: list[Check]
    concurrency: list[Check]
    headers: dict[str, str] = field(default_factory=dict)
    finished: bool = False

    async def finish(self, *, tokens_used: int | None) -> None:
        """Settles the token counters to what was used (None: nothing, the task failed) and frees the
        concurrency slot. Safe to call twice; never raises (it runs while a response is ending)."""
        if self.finished:
            return
        self.finished = True
        delta = (tokens_used or 0) - self.tokens_reserved
        changes = [(c.key, delta) for c in self.token_checks if delta] + [
            (c.key, -1) for c in self.concurrency
        ]
        results = await asyncio.gather(*(self.counters.add(k, d) for k, d in changes), return_exceptions=True)
        for (key, _), result in zip(changes, results, strict=True):
            if isinstance(result, BaseException):
                log.error("could not settle counter %s: %s", key, result)


class RateLimiter:
    def __init__(self, counters: Counters, limits: Limits, control: Control) -> None:
        self._counters = counters
        self.limits = limits
        self.control = control

    def global_limit(self) -> int:
        throttle = self.control.throttle
        base = self.limits.global_requests_per_min
        return base if throttle is None else min(base, throttle)

    async def admit(self, principal: Principal, *, tokens: int) -> Ticket:
        now = time.time()
        if self.control.throttle == 0:
            raise RateLimited(
                "The service is under an emergency throttle; try again later",
                code="emergency_throttle",
                headers={"retry-after": "60"},
            )
        wanted = checks(
            self.limits,
            now=now,
            tenant_id=principal.tenant_id,
            subject=principal.subject,
            tokens=tokens,
            global_requests_per_min=self.global_limit(),
        )
        try:
            results = await asyncio.gather(
                *(self._counters.add(c.key, c.delta, ceiling=c.limit) for c in wanted)
            )
        except (CounterContention, OSError, TimeoutError) as exc:
            log.error("rate limiter unavailable: %s", exc)
            raise ServiceUnavailable(
                "the rate limiter is unavailable; try again", headers={"retry-after": "1"}
            ) from exc
        refused = [(c, v) for c, (ok, v) in zip(wanted, results, strict=True) if not ok]
        applied = [c for c, (ok, _) in zip(wanted, results, strict=True) if ok]
        seen = [(c, v) for c, (_, v) in zip(wanted, results, strict=True)]
        if refused:
            await asyncio.gather(
                *(self._counters.add(c.key, -c.delta) for c in applied), return_exceptions=True
            )
            raise _refusal(*refused[0], now=now, headers=ratelimit_headers(seen, now=now))
        return Ticket(
            counters=self._counters,
            tokens_reserved=tokens,
            token_checks=[c for c in wanted if c.kind == "tokens"],
            concurrency=[c for c in wanted if c.kind == "concurrency"],
            headers=ratelimit_headers(seen, now=now),
        )


def _refusal(check: Check, used: int, *, now: float, headers: dict[str, str]) -> RateLimited:
    wait = 1.0 if check.reset_at is None else max(check.reset_at - now, 0.001)
    per = {"requests": "requests per min", "tokens": "tokens per day", "concurrency": "concurrent tasks"}
    message = (
        f"Rate limit reached for {per[check.kind]} ({check.scope}): limit {check.limit}, used {used}"
        + (f", requested {check.delta}" if check.kind == "tokens" else "")
        + f". Please try again in {duration(wait)}."
    )
    headers = {**headers, "retry-after": str(max(math.ceil(wait), 1))}
    type_ = "tokens" if check.kind == "tokens" else "requests"
    code = "concurrency_limit_exceeded" if check.kind == "concurrency" else "rate_limit_exceeded"
    return RateLimited(message, type_=type_, code=code, headers=headers)
