"""Budgets: daily per user (by plan) and monthly per organisation, held in JetStream KV in micro-USD.

A request reserves its worst-case cost before it runs (compare-and-set against the budget, so concurrent
requests on any replica cannot overshoot it), then settles to the real cost when its result arrives, or
gives the reservation back when it fails or times out. After each change the organisation's headroom is
published for the router (bucket `switchyard-budgets`, key = tenant id; see `switchyard.common.budgets`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js.kv import KeyValue

from switchyard.common.budgets import BudgetHeadroom, limit_key, write_headroom, write_limit
from switchyard.gateway.budgets.pricing import MICRO
from switchyard.gateway.errors import RateLimited
from switchyard.gateway.limits.counters import Counters
from switchyard.gateway.tenants import Principal

log = logging.getLogger(__name__)

PLAN_DAILY_USD: dict[str, float | None] = {"free": 0.50, "pro": 10.0, "enterprise": None}


@dataclass(frozen=True, slots=True)
class Account:
    """One budget a request is charged to: its counter key, ceiling (None: unlimited) and period end."""

    scope: str  # "user" (per day) or "org" (per month)
    key: str
    ceiling: int | None
    ends_at: datetime
    period: str


def accounts(
    principal: Principal, *, now: datetime, plan_daily_usd: dict[str, float | None]
) -> list[Account]:
    day = now.strftime("%Y%m%d")
    month = now.strftime("%Y%m")
    tomorrow = datetime.fromtimestamp((math.floor(now.timestamp() / 86400) + 1) * 86400, UTC)
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    daily = plan_daily_usd.get(principal.plan)
    monthly = principal.org_monthly_budget_usd
    return [
        Account("org", f"spend.org.{principal.tenant_id}.{month}", _micro(monthly), next_month, month),
        Account("user", f"spend.user.{principal.subject}.{day}", _micro(daily), tomorrow, day),
    ]


def _micro(usd: float | None) -> int | None:
    return None if usd is None else math.floor(usd * MICRO + 1e-6)


@dataclass
class Reservation:
    budgets: Budgets
    principal: Principal
    accounts: list[Account]
    reserved: int
    settled: bool = False

    async def settle(self, *, cost: int | None) -> None:
        """To the real cost (None: keep the worst case); `release` when nothing ran. Never raises."""
        if self.settled:
            return
        self.settled = True
        delta = (self.reserved if cost is None else cost) - self.reserved
        if delta:
            await self.budgets.adjust(self.principal, self.accounts, delta)

    async def release(self) -> None:
        if self.settled:
            return
        self.settled = True
        await self.budgets.adjust(self.principal, self.accounts, -self.reserved)


class Budgets:
    def __init__(
        self,
        counters: Counters,
        headroom: KeyValue,
        *,
        plan_daily_usd: dict[str, float | None] | None = None,
        limits: KeyValue | None = None,
    ) -> None:
        self._counters = counters
        self._headroom = headroom
        self._limits = limits  # ceilings for billing's budget alerts (switchyard.common.budgets)
        self._limits_written: dict[str, int | None] = {}
        self._plan_daily = plan_daily_usd or PLAN_DAILY_USD
        self._pending: set[asyncio.Task[None]] = set()

    async def reserve(self, principal: Principal, *, worst_case: int) -> Reservation:
        now = datetime.now(UTC)
        mine = accounts(principal, now=now, plan_daily_usd=self._plan_daily)
        results = await asyncio.gather(
            *(self._counters.add(a.key, worst_case, ceiling=a.ceiling) for a in mine)
        )
        refused = [(a, v) for a, (ok, v) in zip(mine, results, strict=True) if not ok]
        if refused:
            applied = [a for a, (ok, _) in zip(mine, results, strict=True) if ok]
            await asyncio.gather(
                *(self._counters.add(a.key, -worst_case) for a in applied), return_exceptions=True
            )
            raise _exhausted(*refused[0], worst_case=worst_case)
        self._publish(principal, mine[0], results[0][1])
        self._publish_limits(principal, mine)
        return Reservation(self, principal, mine, worst_case)

    async def adjust(self, principal: Principal, mine: list[Account], delta: int) -> None:
        results = await asyncio.gather(
            *(self._counters.add(a.key, delta) for a in mine), return_exceptions=True
        )
        for account, result in zip(mine, results, strict=True):
            if isinstance(result, BaseException):
                log.error("could not settle budget %s by %d: %s", account.key, delta, result)
        if not isinstance(results[0], BaseException):
            self._publish(principal, mine[0], results[0][1])

    def _publish(self, principal: Principal, org: Account, spent: int) -> None:
        task = asyncio.create_task(self._put_headroom(principal.tenant_id, org, spent))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _publish_limits(self, principal: Principal, mine: list[Account]) -> None:
        if self._limits is None:
            return
        for account in mine:
            if account.scope == "user" and principal.user_id is None:
                continue  # billing alerts users by user id; a service key has none
            key = limit_key(principal.tenant_id, principal.user_id if account.scope == "user" else None)
            if key in self._limits_written and self._limits_written[key] == account.ceiling:
                continue
            self._limits_written[key] = account.ceiling
            task = asyncio.create_task(self._put_limit(key, account.ceiling))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _put_limit(self, key: str, ceiling: int | None) -> None:
        assert self._limits is not None
        try:
            await write_limit(self._limits, key, ceiling)
        except Exception as exc:  # alerts wait for the next reservation, which writes again
            self._limits_written.pop(key, None)
            log.warning("could not publish the budget limit %s: %s", key, exc)

    async def _put_headroom(self, tenant_id: str, org: Account, spent: int) -> None:
        try:
            await write_headroom(self._headroom, tenant_id, headroom_of(org, spent))
        except Exception as exc:  # advisory for the router: the next change publishes again
            log.warning("could not publish the budget headroom of %s: %s", tenant_id, exc)

    async def drain(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def headroom_of(org: Account, spent: int) -> BudgetHeadroom:
    """What the router reads (see `switchyard.common.budgets`): the organisation's monthly budget minus
    what is spent or reserved this month; `headroom_usd` null means no monthly budget."""
    return BudgetHeadroom(
        headroom_usd=None if org.ceiling is None else max(org.ceiling - spent, 0) / MICRO,
        limit_usd=None if org.ceiling is None else org.ceiling / MICRO,
        spent_usd=spent / MICRO,
        period=org.period,
        updated_at=time.time(),
    )


def _exhausted(account: Account, spent: int, *, worst_case: int) -> RateLimited:
    assert account.ceiling is not None
    wait = max((account.ends_at - datetime.now(UTC)).total_seconds(), 1)
    period = "daily" if account.scope == "user" else "monthly"
    who = "your" if account.scope == "user" else "the organisation's"
    return RateLimited(
        f"This request could cost up to ${worst_case / MICRO:.4f}, more than is left of {who} {period} "
        f"budget (${max(account.ceiling - spent, 0) / MICRO:.4f} of ${account.ceiling / MICRO:.2f}). "
        "Lower max_tokens, or wait for the budget to renew.",
        type_="insufficient_quota",
        code="budget_exceeded",
        headers={"retry-after": str(math.ceil(wait))},
    )
