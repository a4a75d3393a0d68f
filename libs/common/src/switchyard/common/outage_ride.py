"""A consumer's failures told apart: its database cannot be reached (an outage: the event waits on the stream
and is tried again, for up to a day) or the event itself is at fault (its handler failed on its own, or its
process was killed or hung on it): counted, then dead-lettered.

Without it a PostgreSQL outage of ~20 minutes (a billing or audit consumer's 50 redeliveries at up to 30 s
apart) dead-lettered every usage, ledger and erasure event that came meanwhile, and each waited for an
operator's `switchyard dlq replay`. The server counts every delivery; so the consumer's server-side limit
is raised by a day of redeliveries (`bus.outage_deliveries`), and the deliveries that failed on an outage
are counted per event in the KV bucket `switchyard-outage-retries` (`OutageCounts`): every other delivery
counts against the consumer's `max_deliver`, whichever process or replica had it. A count kept in memory
died with its process, so an event that killed its process (out of memory, a crash in a driver) or hung
it past the ack wait was redelivered ~2,930 times, a day, crash-looping its consumer. The bucket is
written only when a delivery fails on an outage and read only past `max_deliver` deliveries: an event
handled at its first tries costs nothing more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from nats.js.kv import KeyValue

from switchyard.common import kv, kv_guard

log = logging.getLogger(__name__)

# How long an event's outage count is kept after its last outage retry: the day it may ride, and a day more.
KEEP_S = 2 * 24 * 3600.0


class Counts(Protocol):
    """Per event (its stream sequence), how many of its deliveries failed on an outage."""

    async def add(self, seq: int) -> None: ...

    async def count(self, seq: int) -> int | None:
        """None: the count cannot be read now (the KV bucket unreachable)."""
        ...


class OutageCounts:
    """`Counts` in the KV bucket `switchyard-outage-retries`, key `<stream>.<durable>.<seq>`, compare-and-set
    (a redelivery after an ack wait may run beside the delivery it replaced). A count that cannot be written
    (the bucket unreachable) is logged: that delivery then counts against `max_deliver`."""

    def __init__(self, stream: str, durable: str, open_bucket: Callable[[], Awaitable[KeyValue]]) -> None:
        self._prefix = f"{kv.safe_key(stream)}.{kv.safe_key(durable)}"
        self._open = open_bucket
        self._bucket: KeyValue | None = None

    async def _kv(self) -> KeyValue:
        if self._bucket is None:
            self._bucket = await self._open()
        return self._bucket

    async def add(self, seq: int) -> None:
        def more(current: bytes | None) -> tuple[bytes, None]:
            return str(_number(current) + 1).encode(), None

        try:
            await kv.update(await self._kv(), f"{self._prefix}.{seq}", more, reader=kv_guard.read_over)
        except Exception as exc:
            log.warning(
                "%s: could not count the outage retry of stream sequence %d (%s: %s); it counts against "
                "max_deliver",
                self._prefix,
                seq,
                type(exc).__name__,
                exc,
            )

    async def count(self, seq: int) -> int | None:
        try:
            value, _ = await kv_guard.read(await self._kv(), f"{self._prefix}.{seq}")
        except Exception as exc:
            log.warning(
                "%s: could not read the outage retries of stream sequence %d (%s: %s)",
                self._prefix,
                seq,
                type(exc).__name__,
                exc,
            )
            return None
        return _number(value)


def _number(value: bytes | None) -> int:
    try:
        return max(int(value or b"0"), 0)
    except ValueError:
        return 0


class OutageRide:
    def __init__(
        self,
        durable: str,
        *,
        own_limit: int,
        server_limit: int,
        outage: Callable[[BaseException], bool],
        counts: Counts,
        backoff_cap_s: float,
        log_every_s: float,
    ) -> None:
        self._durable = durable
        self._own_limit = own_limit
        self._server_limit = server_limit
        self._outage = outage
        self._counts = counts
        self._cap = backoff_cap_s
        self._log_every = log_every_s
        self._logged_at = 0.0
        self._retried = 0  # outage retries since the last log line

    async def spent(self, seq: int, delivered: int) -> int | None:
        """Before the handler runs on delivery `delivered`: the earlier deliveries that were not outage
        retries (they failed on their own, or never settled: the process killed or hung on the event),
        when they reached `max_deliver` (None: not, or unknown). Read only past `max_deliver` deliveries."""
        if delivered <= self._own_limit:
            return None
        retries = await self._counts.count(seq)
        if retries is None:  # unknown: run it (the server's limit still bounds every delivery)
            return None
        spent = delivered - 1 - retries
        return spent if spent >= self._own_limit else None

    async def retry_in(self, event_id: str, seq: int, exc: BaseException, delivered: int) -> float | None:
        """The delay before the event is tried again, or None: dead-letter it (its deliveries that were not
        outage retries reached the consumer's `max_deliver`, or all of them the server's limit)."""
        if delivered >= self._server_limit:
            return None
        if any(self._outage(cause) for cause in _causes(exc)):
            await self._counts.add(seq)
            self._note_outage(event_id, exc, delivered)
            return self._delay(delivered)
        own = delivered
        if delivered >= self._own_limit:
            retries = await self._counts.count(seq)
            own = delivered - retries if retries is not None else self._own_limit - 1  # unknown: once more
        if own >= self._own_limit:
            return None
        log.warning(
            "handler failed on event %s (failure %d of %d, retried): %s: %s",
            event_id,
            own,
            self._own_limit,
            type(exc).__name__,
            exc,
        )
        return self._delay(own)

    def _delay(self, attempt: int) -> float:
        return min(0.5 * 2.0 ** min(attempt - 1, 16), self._cap)

    def _note_outage(self, event_id: str, exc: BaseException, delivered: int) -> None:
        """One line a minute while the database is out, not one per event and delivery."""
        self._retried += 1
        now = time.monotonic()
        if now - self._logged_at < self._log_every:
            return
        log.warning(
            "%s: the database cannot be reached (%s: %s); event %s (delivery %d) and %d more retries in the "
            "last %.0f s wait on the stream and are tried again",
            self._durable,
            type(exc).__name__,
            str(exc)[:200],
            event_id,
            delivered,
            self._retried - 1,
            self._log_every if self._logged_at else 0.0,
        )
        self._logged_at, self._retried = now, 0


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from or during (a ledger append's `TransientError` from the driver's
    connection error), at most 8 deep."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 8 and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
