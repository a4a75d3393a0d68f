"""Admission against the rate limits and quotas: every counter of a request is taken (from this replica's
lease, or with compare-and-set in KV), and given back if any one of them refuses, so a refused request
costs nothing."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from switchyard.common.errors import TransientError
from switchyard.common.leases import Leases
from switchyard.common.wants import Want, take_all
from switchyard.gateway.errors import RateLimited, ServiceUnavailable
from switchyard.gateway.limits.control import Control
from switchyard.gateway.limits.headers import duration, ratelimit_headers
from switchyard.gateway.limits.models import Check, Limits, checks, count_check
from switchyard.gateway.tenants import Principal

log = logging.getLogger(__name__)


@dataclass
class Ticket:
    """An admitted request: its headers, and what to give back when it ends."""

    tokens_reserved: int
    token_wants: list[Want]
    concurrency: list[Want]
    headers: dict[str, str] = field(default_factory=dict)
    finished: bool = False

    def give_backs(self, *, unused: int) -> list[tuple[Want, int]]:
        """What to give back when the task ends: `unused` tokens of the reservation to the token counters
        (`admission.unused`), and the concurrency slot. Empty the second time."""
        if self.finished:
            return []
        self.finished = True
        return [(w, unused) for w in self.token_wants if unused] + [(w, 1) for w in self.concurrency]


class RateLimiter:
    """Counters of requests and tokens (fixed windows) from `windows`, concurrency slots from `slots`:
    leases of KV counters (`switchyard.common.leases`), so a request usually takes them in memory."""

    def __init__(self, windows: Leases, slots: Leases, limits: Limits, control: Control) -> None:
        self.windows = windows
        self.slots = slots
        self.limits = limits
        self.control = control

    def global_limit(self) -> int:
        throttle = self.control.throttle
        base = self.limits.global_requests_per_min
        return base if throttle is None else min(base, throttle)

    def wants(
        self, principal: Principal, *, tokens: int, now: float, batch: bool = False
    ) -> list[tuple[Check, Want]]:
        """The counters a request must take (a batch line's: its organisation's batch slots too, `checks`),
        broadest first; raises at once under a full throttle."""
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
            batch=batch,
            key=None if principal.key_policy is None else (principal.counts_as, principal.key_policy),
            minters=principal.ancestor_policies,
        )
        return [(c, Want(self._leases(c), c.key, c.delta, c.limit, c.reset_at)) for c in wanted]

    async def admit_count(self, principal: Principal, *, now: float) -> None:
        """A token count's own window (`Limits.user_counts_per_min`); raises RateLimited when it is full."""
        check = count_check(self.limits, now=now, subject=principal.subject)
        [(ok, used)] = await take_or_unavailable(
            [Want(self.windows, check.key, 1, check.limit, check.reset_at)]
        )
        if not ok:
            raise _refusal(check, used, now=now, headers={})

    async def admit_request(self, principal: Principal, *, now: float) -> dict[str, str]:
        """A request that runs no task itself (an upload, a batch's creation): the requests-per-minute
        counters a completion takes (global, organisation, user), none of its tokens or concurrency. Its
        `x-ratelimit-*-requests` headers; RateLimited (with them and Retry-After) when one is full."""
        wanted = [(c, w) for c, w in self.wants(principal, tokens=0, now=now) if c.kind == "requests"]
        results = await take_or_unavailable([w for _, w in wanted])
        return self.ticket(wanted, results, tokens=0, now=now).headers

    def _leases(self, check: Check) -> Leases:
        return self.slots if check.kind == "concurrency" else self.windows

    @staticmethod
    def ticket(
        wanted: list[tuple[Check, Want]], results: list[tuple[bool, int]], *, tokens: int, now: float
    ) -> Ticket:
        """The admitted request's ticket, or its refusal (raised) when any counter refused."""
        refused = [(c, used) for (c, _), (ok, used) in zip(wanted, results, strict=True) if not ok]
        # a granted counter's count includes this request's units, which a refusal gives back
        seen = [
            (c, used - c.delta if ok and refused else used)
            for (c, _), (ok, used) in zip(wanted, results, strict=True)
        ]
        headers = ratelimit_headers(seen, now=now)
        if refused:
            # a request larger than a whole limit first (no wait lets it through, so no Retry-After),
            # else the broadest limit it hit
            refused.sort(key=lambda cu: cu[0].delta <= cu[0].limit)
            raise _refusal(*refused[0], now=now, headers=headers)
        return Ticket(
            tokens_reserved=tokens,
            token_wants=[w for c, w in wanted if c.kind == "tokens"],
            concurrency=[w for c, w in wanted if c.kind == "concurrency"],
            headers=headers,
        )


async def requests_admitted(limiter: RateLimiter | None, principal: Principal) -> dict[str, str]:
    """`RateLimiter.admit_request` now, when limits are on (`limiter`); its headers."""
    return {} if limiter is None else await limiter.admit_request(principal, now=time.time())


async def take_or_unavailable(
    wants: list[Want], partial: list[tuple[bool, int] | None] | None = None
) -> list[tuple[bool, int]]:
    """`take_all`, with a store that cannot answer turned into a 503 the client may retry."""
    try:
        return await take_all(wants, partial)
    except (TransientError, OSError, TimeoutError) as exc:
        log.error("rate limiter unavailable: %s", exc)
        raise ServiceUnavailable(
            "the rate limiter is unavailable; try again", headers={"retry-after": "1"}, retry=True
        ) from exc


def _refusal(check: Check, used: int, *, now: float, headers: dict[str, str]) -> RateLimited:
    wait = 1.0 if check.reset_at is None else max(check.reset_at - now, 0.001)
    per = {
        "requests": "requests per min",
        "tokens": "tokens per day",
        "concurrency": "concurrent tasks",
        "counts": "token counts per min",
    }
    type_ = "tokens" if check.kind == "tokens" else "requests"
    window = check.per or per[check.kind]
    if check.delta > check.limit:  # more than the whole limit: waiting will not help (OpenAI's wording)
        message = (
            f"Request too large for {window} ({check.scope}): limit {check.limit}, requested "
            f"{check.delta}. The input or max_tokens must be reduced in order to run successfully."
        )
        # `x-should-retry: false`: the OpenAI and Anthropic SDKs would otherwise send it again, twice.
        return RateLimited(message, type_=type_, code="rate_limit_exceeded", headers=headers, retry=False)
    message = (
        f"Rate limit reached for {window} ({check.scope}): limit {check.limit}, used {used}"
        + (f", requested {check.delta}" if check.kind == "tokens" else "")
        + f". Please try again in {duration(wait)}."
    )
    headers = {**headers, "retry-after": str(max(math.ceil(wait), 1))}
    code = "concurrency_limit_exceeded" if check.kind == "concurrency" else "rate_limit_exceeded"
    return RateLimited(message, type_=type_, code=code, headers=headers)
