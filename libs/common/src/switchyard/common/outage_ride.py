"""A consumer's failures told apart: its database cannot be reached (an outage: the event waits on the stream
and is tried again, for up to a day) or the handler failed on its own (counted, then dead-lettered).

Without it a PostgreSQL outage of ~20 minutes (a billing or audit consumer's 50 redeliveries at up to 30 s
apart) dead-lettered every usage, ledger and erasure event that came meanwhile, and each waited for an
operator's `switchyard dlq replay`. The server counts every delivery; so the consumer's server-side limit
is raised by a day of redeliveries (`bus.outage_deliveries`), and the handler's own failures are counted
here, per event, by the replica that saw them.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

log = logging.getLogger(__name__)

KEEP_COUNTS = 10_000  # events whose own failures a replica remembers (the oldest forgotten first)


class OutageRide:
    def __init__(
        self,
        durable: str,
        *,
        own_limit: int,
        server_limit: int,
        outage: Callable[[BaseException], bool],
        backoff_cap_s: float,
        log_every_s: float,
    ) -> None:
        self._durable = durable
        self._own_limit = own_limit
        self._server_limit = server_limit
        self._outage = outage
        self._cap = backoff_cap_s
        self._log_every = log_every_s
        self._own: OrderedDict[str, int] = OrderedDict()  # event id -> its handler's own failures here
        self._logged_at = 0.0
        self._retried = 0  # outage retries since the last log line

    def settled(self, event_id: str) -> None:
        self._own.pop(event_id, None)

    def retry_in(self, event_id: str, exc: BaseException, delivered: int) -> float | None:
        """The delay before the event is tried again, or None: dead-letter it (its own failures reached the
        consumer's `max_deliver`, or every replica together reached the server's limit)."""
        if delivered >= self._server_limit:
            self._own.pop(event_id, None)
            return None
        if any(self._outage(cause) for cause in _causes(exc)):
            self._note_outage(event_id, exc, delivered)
            return self._delay(delivered)
        own = self._own.pop(event_id, 0) + 1
        if own >= self._own_limit:
            return None
        self._own[event_id] = own
        while len(self._own) > KEEP_COUNTS:
            self._own.popitem(last=False)
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
