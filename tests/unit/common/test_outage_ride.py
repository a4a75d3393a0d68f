"""Which failures of a consumer's handler wait out a database outage and which are dead-lettered: the
arithmetic over an event's deliveries and its outage retries (kept in KV by `OutageCounts`, here in a dict;
tests/integration/pipeline/test_poison_event.py and test_database_outage_ride.py run it on nats-server)."""

from __future__ import annotations

import pytest

from switchyard.common.outage_ride import OutageRide

pytestmark = pytest.mark.unit


class Unreachable(OSError):
    pass


class Counts:
    def __init__(self, readable: bool = True) -> None:
        self.retries: dict[int, int] = {}
        self.readable = readable
        self.reads = 0

    async def add(self, seq: int) -> None:
        self.retries[seq] = self.retries.get(seq, 0) + 1

    async def count(self, seq: int) -> int | None:
        self.reads += 1
        return self.retries.get(seq, 0) if self.readable else None


def _ride(counts: Counts, own_limit: int = 3, server_limit: int = 100) -> OutageRide:
    return OutageRide(
        "probe",
        own_limit=own_limit,
        server_limit=server_limit,
        outage=lambda exc: isinstance(exc, Unreachable),
        counts=counts,
        backoff_cap_s=30.0,
        log_every_s=60.0,
    )


def _wrapped() -> RuntimeError:
    try:
        try:
            raise Unreachable("connection refused")
        except Unreachable as inner:
            raise RuntimeError("could not append to the ledger") from inner
    except RuntimeError as outer:
        return outer


async def test_an_outage_is_retried_at_any_delivery_below_the_servers_limit_and_counted() -> None:
    counts = Counts()
    ride = _ride(counts)
    delays = [
        await ride.retry_in("e1", 7, Unreachable("refused"), delivered) for delivered in (1, 2, 3, 10, 99)
    ]
    assert delays == [0.5, 1.0, 2.0, 30.0, 30.0]
    assert counts.retries == {7: 5}
    assert (
        await ride.retry_in("e1", 7, Unreachable("refused"), 100) is None
    )  # every delivery together: the end


async def test_an_outage_raised_from_inside_another_error_counts() -> None:
    counts = Counts()
    assert await _ride(counts).retry_in("e1", 7, _wrapped(), 40) == 30.0
    assert counts.retries == {7: 1}


async def test_a_handlers_own_failures_below_max_deliver_read_nothing() -> None:
    counts = Counts()
    ride = _ride(counts, own_limit=3)
    assert [await ride.retry_in("e1", 7, ValueError("bug"), d) for d in (1, 2)] == [0.5, 1.0]
    assert await ride.spent(7, 3) is None
    assert counts.reads == 0 and counts.retries == {}  # the normal path pays nothing


async def test_a_handlers_own_failures_after_an_outage_count_from_the_outage_on() -> None:
    counts = Counts()
    ride = _ride(counts, own_limit=3)
    for delivered in range(1, 51):  # fifty deliveries of an outage
        await ride.retry_in("e1", 7, Unreachable("refused"), delivered)
    assert await ride.spent(7, 51) is None
    assert await ride.retry_in("e1", 7, ValueError("bug"), 51) == 0.5
    assert await ride.retry_in("e1", 7, ValueError("bug"), 52) == 1.0
    assert await ride.retry_in("e1", 7, ValueError("bug"), 53) is None  # its third failure: the last
    assert await ride.retry_in("e2", 8, ValueError("bug"), 1) == 0.5  # another event has its own count


async def test_deliveries_that_never_settled_count_whichever_process_had_them() -> None:
    counts = Counts()
    ride = _ride(counts, own_limit=3)
    for delivered in range(1, 6):  # five outage retries, then three deliveries that killed their process
        await ride.retry_in("e1", 7, Unreachable("refused"), delivered)
    assert await ride.spent(7, 8) is None  # two crashes (6, 7): not yet
    assert await _ride(counts, own_limit=3).spent(7, 9) == 3  # a third (8); a new process, the same counts
    assert await ride.spent(9, 4) == 3  # no outage: three deliveries that never settled it


async def test_unreadable_counts_never_give_an_event_up() -> None:
    ride = _ride(Counts(readable=False), own_limit=3)
    assert await ride.spent(7, 40) is None  # run it again: the server's limit bounds it
    assert (
        await ride.retry_in("e1", 7, ValueError("bug"), 40) == 1.0
    )  # retried once more, as before its last failure
