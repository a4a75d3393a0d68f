"""Budgets: daily per user (by plan), monthly per organisation and, for a key with a budget of its own,
daily, monthly or in all (its lifetime) per key (`key_policy`), held in JetStream KV in micro-USD
(`counters.SpendCounters`: a lifetime's in a bucket that never expires it).

A request reserves its worst-case cost before it runs (from this replica's lease of the budget, taken by
compare-and-set, so concurrent requests on any replica cannot overshoot it), then settles to the real cost
when its result arrives, or gives the reservation back when it fails or times out. After changes the
organisation's headroom is published for the router (bucket `switchyard-budgets`, key = tenant id; see
`switchyard.common.budgets`), at most every HEADROOM_EVERY_S per tenant, the latest value winning. What
this replica has leased but not spent is not counted as spent in what it publishes; another replica's
unspent lease is (at most 1/64 of what was left when it was taken, and handed back within 250 ms idle).
The ceilings billing's alerts read (bucket `switchyard-budget-limits`) are written once per replica; a
revision the JetStream server stored there on a client's behalf (common/kv_guard.py) is written over at
once by each replica that wrote that key (`start`), where it would otherwise stay until the ceiling changed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from nats.js.kv import KeyValue

from switchyard.common import kv_guard
from switchyard.common.background import Background, cancel
from switchyard.common.budgets import BudgetHeadroom, limit_key, write_headroom, write_limit
from switchyard.common.leases import Leases
from switchyard.common.wants import Want
from switchyard.gateway.budgets.counters import TOTAL
from switchyard.gateway.budgets.pricing import MICRO
from switchyard.gateway.errors import SDK_WAIT_S, RateLimited
from switchyard.gateway.key_policy import BudgetDuration
from switchyard.gateway.tenants import Principal

log = logging.getLogger(__name__)

PLAN_DAILY_USD: dict[str, float | None] = {"free": 0.50, "pro": 10.0, "enterprise": None}
LIFETIME = "lifetime"  # the period of a key's budget without a duration: it never ends


@dataclass(frozen=True, slots=True)
class Account:
    """One budget a request is charged to: its counter key, ceiling (None: unlimited) and period end (None:
    a key's lifetime budget, which never renews)."""

    scope: str  # "user" (per day), "org" (per month), "key" (its budget_duration, else its lifetime) or
    # "minter" (a key that minted it: that key's own "key" account, counted against by what it minted)
    key: str
    ceiling: int | None
    ends_at: datetime | None
    period: str  # YYYYMMDD (a day's), YYYYMM (a month's) or LIFETIME

    @property
    def every(self) -> str:
        return LIFETIME if self.period == LIFETIME else "daily" if len(self.period) == 8 else "monthly"


def _day(now: datetime) -> tuple[str, datetime]:
    return now.strftime("%Y%m%d"), datetime.fromtimestamp(
        (math.floor(now.timestamp() / 86400) + 1) * 86400, UTC
    )


def _month(now: datetime) -> tuple[str, datetime]:
    return now.strftime("%Y%m"), datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)


def accounts(
    principal: Principal, *, now: datetime, plan_daily_usd: dict[str, float | None]
) -> list[Account]:
    """The organisation's account first (its headroom is published), then the user's, then the key's,
    then those of the keys that minted it (`Principal.ancestor_policies`): a key's budget bounds what it
    and every key minted from it spend together, as a sub-account's."""
    day, tomorrow = _day(now)
    month, next_month = _month(now)
    daily = plan_daily_usd.get(principal.plan)
    monthly = principal.org_monthly_budget_usd
    mine = [
        Account("org", f"spend.org.{principal.tenant_id}.{month}", _micro(monthly), next_month, month),
        Account("user", f"spend.user.{principal.subject}.{day}", _micro(daily), tomorrow, day),
    ]
    budget = None if principal.key_policy is None else principal.key_policy.budget
    if budget is not None:
        mine.append(key_account(principal.counts_as, *budget, now=now))
    for ancestor, policy in principal.ancestor_policies:
        if policy.budget is not None:
            mine.append(replace(key_account(ancestor, *policy.budget, now=now), scope="minter"))
    return mine


def key_account(key_id: str, usd: float, duration: BudgetDuration | None, *, now: datetime) -> Account:
    """A key's own budget (`key_id`: its lineage's, `Principal.counts_as`) for the period `now` is in: the
    UTC day (1d) or the calendar month (1mo); without a duration, its lifetime (`counters.TOTAL`)."""
    if duration is None:
        return Account("key", f"spend.key.{key_id}{TOTAL}", _micro(usd), None, LIFETIME)
    period, ends_at = _day(now) if duration == "1d" else _month(now)
    return Account("key", f"spend.key.{key_id}.{period}", _micro(usd), ends_at, period)


def _micro(usd: float | None) -> int | None:
    return None if usd is None else math.floor(usd * MICRO + 1e-6)


@dataclass
class Reservation:
    budgets: Budgets
    principal: Principal
    accounts: list[Account]
    wants: list[Want]
    reserved: int
    settled: bool = False

    def give_backs(self, *, unused: int) -> list[tuple[Want, int]]:
        """What to give back: `unused` micro-USD of the worst case (`admission.unused`) to each account.
        Empty the second time."""
        if self.settled:
            return []
        self.settled = True
        return [(w, unused) for w in self.wants] if unused else []


class Budgets:
    """Spend counters from `spend`: leases of KV counters (`switchyard.common.leases`), sized small
    against a budget (the spend leases' divisor is 64: one replica holds at most 1/64 of what is left)."""

    HEADROOM_EVERY_S = 0.25  # the router caches a tenant's headroom for a second: coalesce writes

    def __init__(
        self,
        spend: Leases,
        headroom: KeyValue,
        *,
        plan_daily_usd: dict[str, float | None] | None = None,
        limits: KeyValue | None = None,
    ) -> None:
        self.spend = spend
        self._headroom = headroom
        self._limits = limits  # ceilings for billing's budget alerts (switchyard.common.budgets)
        self._limits_written: dict[str, int | None] = {}
        self._plan_daily = plan_daily_usd or PLAN_DAILY_USD
        self._pending = Background()
        self._orgs: dict[str, tuple[str, Account]] = {}  # org spend key -> (tenant id, account)
        self._headroom_due: dict[str, Account] = {}  # tenant -> its org account, headroom not yet written
        self._headroom_at: dict[str, float] = {}
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Watches the ceilings' bucket for forged revisions of the keys this replica wrote."""
        if self._limits is not None:
            self._watch = await kv_guard.on_forged(self._limits, self._rewrite_limit, name="budget-limits")

    def _rewrite_limit(self, key: str) -> None:
        if key in self._limits_written:
            self._pending.spawn(self._put_limit(key, self._limits_written[key]))

    def accounts(self, principal: Principal) -> list[Account]:
        """The budgets `principal`'s requests are charged to now (`accounts`)."""
        return accounts(principal, now=datetime.now(UTC), plan_daily_usd=self._plan_daily)

    def wants(self, mine: list[Account], *, worst_case: int) -> list[Want]:
        """`worst_case` micro-USD of each of `mine`."""
        return [
            Want(
                self.spend, a.key, worst_case, a.ceiling, None if a.ends_at is None else a.ends_at.timestamp()
            )
            for a in mine
        ]

    def reservation(
        self,
        principal: Principal,
        mine: list[Account],
        wants: list[Want],
        results: list[tuple[bool, int]],
        *,
        worst_case: int,
    ) -> Reservation:
        """The reservation, or its refusal (raised) when an account could not pay."""
        refused = [(a, used) for a, (ok, used) in zip(mine, results, strict=True) if not ok]
        if refused:
            raise _exhausted(*refused[0], worst_case=worst_case)
        if len(self._orgs) > 4096:
            self._orgs.clear()
        self._orgs[mine[0].key] = (principal.tenant_id, mine[0])
        self._publish(principal.tenant_id, mine[0])
        self._publish_limits(principal, mine)
        return Reservation(self, principal, mine, wants, worst_case)

    def spent_changed(self, reservation: Reservation) -> None:
        self._publish(reservation.principal.tenant_id, reservation.accounts[0])

    def returned(self, key: str, used: int) -> None:
        """Told by the spend leases after an idle hand-back: the headroom the router sees grows again."""
        known = self._orgs.get(key)
        if known is not None:
            self._publish(*known)

    def _publish(self, tenant_id: str, org: Account) -> None:
        """The org's headroom for the router: written at once, or (written less than HEADROOM_EVERY_S
        ago) once that interval is up, from a fresh read of the spend counter less this replica's unused
        lease (so the last writer's value includes every hand-back before it)."""
        waiting = tenant_id in self._headroom_due
        self._headroom_due[tenant_id] = org
        if waiting:
            return
        self._pending.spawn(self._put_headroom(tenant_id))

    def _publish_limits(self, principal: Principal, mine: list[Account]) -> None:
        if self._limits is None:
            return
        for account in mine:
            if account.scope in ("key", "minter") or (account.scope == "user" and principal.user_id is None):
                continue  # billing alerts users (by user id) and organisations, not keys
            key = limit_key(principal.tenant_id, principal.user_id if account.scope == "user" else None)
            if key in self._limits_written and self._limits_written[key] == account.ceiling:
                continue
            self._limits_written[key] = account.ceiling
            self._pending.spawn(self._put_limit(key, account.ceiling))

    async def _put_limit(self, key: str, ceiling: int | None) -> None:
        assert self._limits is not None
        try:
            await write_limit(self._limits, key, ceiling)
        except Exception as exc:  # alerts wait for the next reservation, which writes again
            self._limits_written.pop(key, None)
            log.warning("could not publish the budget limit %s: %s", key, exc)

    async def _put_headroom(self, tenant_id: str) -> None:
        wait = self._headroom_at.get(tenant_id, 0.0) + self.HEADROOM_EVERY_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        org = self._headroom_due.pop(tenant_id)
        self._headroom_at[tenant_id] = time.monotonic()
        if len(self._headroom_at) > 4096:
            self._headroom_at.clear()
        try:
            spent = await self.spend.store.read(org.key) - self.spend.free(org.key)
            await write_headroom(self._headroom, tenant_id, headroom_of(org, spent))
        except Exception as exc:  # advisory for the router: the next change publishes again
            log.warning("could not publish the budget headroom of %s: %s", tenant_id, exc)

    async def spent(self, account: Account) -> int:
        """Micro-USD spent or reserved in `account`'s period: its counter, less this replica's unused lease
        of it (another replica's counts, as for the router's headroom)."""
        return max(await self.spend.store.read(account.key) - self.spend.free(account.key), 0)

    async def drain(self) -> None:
        await cancel(self._watch)
        self._watch = None
        await self._pending.drain()


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


def _usd(micro: int) -> str:
    """A budget as set: cents (`$1.50`), or as many places as a budget under a cent has (`$0.001`, not
    `$0.00`, which would read as no budget at all)."""
    if micro % 10_000 == 0:
        return f"${micro / MICRO:.2f}"
    return f"${micro / MICRO:.6f}".rstrip("0")


def _exhausted(account: Account, spent: int, *, worst_case: int) -> RateLimited:
    assert account.ceiling is not None
    period = account.every
    who = {
        "user": "your",
        "org": "the organisation's",
        "key": "this API key's",
        "minter": "the minting key's (shared by every key minted from it)",
    }[account.scope]
    if account.ends_at is None:  # a lifetime budget: waiting will not help
        return RateLimited(
            f"This request could cost up to ${worst_case / MICRO:.4f}, more than is left of {who} "
            f"lifetime budget (${max(account.ceiling - spent, 0) / MICRO:.4f} of "
            f"{_usd(account.ceiling)}): it does not renew. Lower max_tokens, or ask an admin to "
            "raise the key's max_budget_usd.",
            type_="insufficient_quota",
            code="budget_exceeded",
            retry=False,
        )
    wait = max((account.ends_at - datetime.now(UTC)).total_seconds(), 1)
    if worst_case > account.ceiling:  # more than the whole budget: waiting for it to renew will not help
        return RateLimited(
            f"This request could cost up to ${worst_case / MICRO:.4f}, more than {who} whole {period} "
            f"budget ({_usd(account.ceiling)}). Lower max_tokens.",
            type_="insufficient_quota",
            code="budget_exceeded",
            retry=False,  # `x-should-retry: false`: the SDKs would otherwise send it again
        )
    return RateLimited(
        f"This request could cost up to ${worst_case / MICRO:.4f}, more than is left of {who} {period} "
        f"budget (${max(account.ceiling - spent, 0) / MICRO:.4f} of {_usd(account.ceiling)}). "
        "Lower max_tokens, or wait for the budget to renew.",
        type_="insufficient_quota",
        code="budget_exceeded",
        headers={"retry-after": str(math.ceil(wait))},
        # Renewing in hours or days: the OpenAI SDK would not wait that long, the Anthropic SDK would sleep
        # through all of it inside the call; the client decides instead. Within a minute (a day's budget
        # refused just before midnight UTC) the SDKs' own wait for Retry-After gets it through.
        retry=wait <= SDK_WAIT_S,
    )
