"""The batches' line and end counters, read off their records' changes: a line counted once its result
is known (the record's `below`), never twice when another replica takes the batch over, the rest at the
batch's end, and the lines it never ran as its end."""

from __future__ import annotations

import itertools

import pytest
from prometheus_client import REGISTRY

from switchyard.gateway.batches import metering
from switchyard.gateway.batches.models import Batch, BatchRecord, RequestCounts, Status

pytestmark = pytest.mark.unit
OUTCOMES = ("completed", "failed", "cancelled", "expired")


def _record(
    status: Status, *, below: tuple[int, int] = (0, 0), counts: tuple[int, int] = (0, 0)
) -> BatchRecord:
    total = 10
    batch = Batch(
        id="batch_1",
        endpoint="/v1/chat/completions",
        input_file_id="file-x",
        status=status,
        created_at=0,
        expires_at=86400,
        request_counts=RequestCounts(total=total, completed=counts[0], failed=counts[1]),
    )
    done = RequestCounts(completed=below[0], failed=below[1])
    return BatchRecord(batch=batch, tenant_id="t", user_id=None, api_key_id="k", below=done)


def _lines() -> dict[str, float]:
    return {
        o: REGISTRY.get_sample_value("switchyard_gateway_batch_lines_total", {"outcome": o}) or 0.0
        for o in OUTCOMES
    }


def _ended(status: str) -> float:
    return REGISTRY.get_sample_value("switchyard_gateway_batches_finished_total", {"status": status}) or 0.0


def _steps(*records: BatchRecord) -> dict[str, float]:
    """The lines counted over the changes from each record to the next."""
    before = _lines()
    for old, new in itertools.pairwise(records):
        metering.count(old, new)
    return {o: n - before[o] for o, n in _lines().items()}


def test_lines_are_counted_as_below_grows_and_not_again_after_a_takeover() -> None:
    ended = _ended("completed")
    grew = _steps(
        _record("validating"),
        _record("in_progress"),
        _record("in_progress", below=(3, 1), counts=(5, 1)),
        # another replica took it over: its counts start again from `below`, which never shrinks
        _record("in_progress", below=(3, 1), counts=(3, 1)),
        _record("in_progress", below=(6, 2), counts=(6, 2)),
        _record("finalizing", below=(6, 2), counts=(7, 2)),
        _record("completed", below=(6, 2), counts=(8, 2)),
        _record("completed", below=(6, 2), counts=(8, 2)),  # a change after the end counts nothing
    )
    assert grew == {"completed": 8, "failed": 2, "cancelled": 0, "expired": 0}
    assert _ended("completed") - ended == 1


@pytest.mark.parametrize("end", ["cancelled", "expired"])
def test_the_lines_a_batch_never_ran_count_as_its_end(end: Status) -> None:
    ended = _ended(end)
    grew = _steps(
        _record("in_progress", below=(2, 0), counts=(2, 0)),
        _record("cancelling", below=(2, 0), counts=(3, 0)),
        _record(end, below=(2, 0), counts=(3, 1)),
    )
    assert grew == {"completed": 1, "failed": 1, "cancelled": 0, "expired": 0, end: 6}
    assert _ended(end) - ended == 1


def test_a_batch_that_failed_validation_counts_its_end_and_no_line() -> None:
    ended = _ended("failed")
    failed = _record("failed")
    failed.batch.request_counts = RequestCounts()
    assert _steps(_record("validating"), failed) == dict.fromkeys(OUTCOMES, 0)
    assert _ended("failed") - ended == 1
