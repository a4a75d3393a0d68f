"""Several counters' units taken at once, all or nothing: a request that needs units of a token window, a
spend budget and a provider's rate limit takes them together (`take_all`), from each counter's local lease
where it covers the want (`take_local_all`) and from the stores concurrently where not; a refusal of any
gives back what the others took (`give_all`), so it costs nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from switchyard.common.leases import Leases

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Want:
    """`need` units of `key` under `ceiling`, from `leases`."""

    leases: Leases
    key: str
    need: int
    ceiling: int | None
    until: float | None = None


def take_local_all(wants: Sequence[Want]) -> list[tuple[bool, int] | None]:
    """Each want taken from its lease in memory where it covers it; None where it does not."""
    out: list[tuple[bool, int] | None] = []
    for w in wants:
        seen = w.leases.take_local(w.key, w.need, ceiling=w.ceiling)
        out.append(None if seen is None else (True, seen))
    return out


async def take_all(
    wants: Sequence[Want], partial: Sequence[tuple[bool, int] | None] | None = None
) -> list[tuple[bool, int]]:
    """Takes every want, from the leases where they cover it and from the stores (concurrently) where
    not (`partial`: what `take_local_all` already took). When any is refused or fails, what the others
    took is given back, so a refusal costs nothing. Returns (granted, units in use as seen here) per
    want; a store error is raised after the give-back."""
    results = list(take_local_all(wants) if partial is None else partial)
    missing = [i for i, r in enumerate(results) if r is None]
    error: BaseException | None = None
    if missing:
        low = [w for w, r in zip(wants, results, strict=True) if r is not None and w.leases.low(w.key)]
        got = await asyncio.gather(
            *(_take(wants[i]) for i in missing),
            *(w.leases.refill(w.key, w.need) for w in low),
            return_exceptions=True,
        )
        for i, r in zip(missing, got, strict=False):
            if isinstance(r, BaseException):
                error = error or r
                results[i] = (False, 0)
            else:
                results[i] = r
    done = [r if r is not None else (False, 0) for r in results]
    if error is not None or not all(ok for ok, _ in done):
        await give_all([w for w, (ok, _) in zip(wants, done, strict=True) if ok])
        if error is not None:
            raise error
    return done


def _take(w: Want) -> Awaitable[tuple[bool, int]]:
    return w.leases.take(w.key, w.need, ceiling=w.ceiling, until=w.until)


async def give_all(wants: Sequence[Want], amounts: Sequence[int] | None = None) -> None:
    """Gives back each want's `need` (or `amounts`); errors are logged, never raised."""
    amounts = [w.need for w in wants] if amounts is None else amounts
    slow = [(w, a) for w, a in zip(wants, amounts, strict=False) if a and not w.leases.give_local(w.key, a)]
    if not slow:
        return
    results = await asyncio.gather(*(w.leases.give(w.key, a) for w, a in slow), return_exceptions=True)
    for (w, a), r in zip(slow, results, strict=True):
        if isinstance(r, BaseException):
            log.error("could not give back %d units of %s: %s", a, w.key, r)
