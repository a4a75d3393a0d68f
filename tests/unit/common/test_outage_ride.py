"""Which failures of a consumer's handler wait out a database outage and which are dead-lettered."""

from __future__ import annotations

from switchyard.common.outage_ride import OutageRide


class Unreachable(OSError):
    pass


def _ride(own_limit: int = 3, server_limit: int = 100) -> OutageRide:
    return OutageRide(
        "probe",
        own_limit=own_limit,
        server_limit=server_limit,
        outage=lambda exc: isinstance(exc, Unreachable),
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


def test_an_outage_is_retried_at_any_delivery_below_the_servers_limit_with_a_capped_backoff() -> None:
    ride = _ride()
    delays = [ride.retry_in("e1", Unreachable("refused"), delivered) for delivered in (1, 2, 3, 10, 99)]
    assert delays == [0.5, 1.0, 2.0, 30.0, 30.0]
    assert ride.retry_in("e1", Unreachable("refused"), 100) is None  # every replica together: the end


def test_an_outage_raised_from_inside_another_error_counts() -> None:
    assert _ride().retry_in("e1", _wrapped(), 40) == 30.0


def test_a_handlers_own_failures_are_counted_per_event_whatever_the_delivery() -> None:
    ride = _ride(own_limit=3)
    # fifty deliveries of an outage, then two failures of its own: still retried, the third is the last
    assert ride.retry_in("e1", ValueError("bug"), 51) == 0.5
    assert ride.retry_in("e2", ValueError("bug"), 1) == 0.5  # another event has its own count
    assert ride.retry_in("e1", ValueError("bug"), 52) == 1.0
    assert ride.retry_in("e1", ValueError("bug"), 53) is None
    assert ride.retry_in("e1", ValueError("bug"), 54) == 0.5  # forgotten once dead-lettered


def test_a_settled_event_forgets_its_failures() -> None:
    ride = _ride(own_limit=2)
    assert ride.retry_in("e1", ValueError("bug"), 1) == 0.5
    ride.settled("e1")
    assert ride.retry_in("e1", ValueError("bug"), 2) == 0.5
