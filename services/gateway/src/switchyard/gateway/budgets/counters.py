"""Where the spend counters are kept: a budget of a period (a day, a month) in `switchyard-spend`, whose
entries expire 40 days after their last write (longer than any period), and a key's lifetime budget
(`…TOTAL`) in `switchyard-spend-total`, whose entries never expire. Both are integer counters changed by
compare-and-set (`IntCounters`), so one set of leases (`Leases`) and the in-flight list of a replica that
dies (`inflight`) take and give back either alike, by the counter's key."""

from __future__ import annotations

from switchyard.common.leases import IntCounters, Spare

TOTAL = ".total"  # the end of a lifetime counter's key


class SpendCounters:
    """A `leases.Store` over the two buckets, each counter in the one its key says."""

    expires = False

    def __init__(self, periods: IntCounters, totals: IntCounters) -> None:
        self.periods = periods
        self.totals = totals

    def _of(self, key: str) -> IntCounters:
        return self.totals if key.endswith(TOTAL) else self.periods

    async def take(self, key: str, need: int, *, ceiling: int | None, spare: Spare) -> tuple[int, int]:
        return await self._of(key).take(key, need, ceiling=ceiling, spare=spare)

    async def add(self, key: str, delta: int) -> int:
        return await self._of(key).add(key, delta)

    async def read(self, key: str) -> int:
        return await self._of(key).read(key)

    async def renew(self, key: str) -> None:
        return None
