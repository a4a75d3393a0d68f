"""The share of an organisation's concurrency its batch lines leave to its interactive requests: how many
slots batch lines may hold, and the counter a batch line takes beside the organisation's."""

from __future__ import annotations

import pytest

from switchyard.gateway.limits.models import Limits, checks

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("org", "share", "slots"),
    [
        (20, 0.5, 10),  # the defaults: half for each
        (21, 0.5, 10),  # the interactive share is rounded up
        (20, 0.0, 20),  # no share kept: batches may take everything
        (20, 0.9, 2),
        (20, 0.99, 1),
        (2, 0.5, 1),
        (1, 0.5, 1),  # at least one batch line runs, or a batch would never end
    ],
)
def test_batch_lines_hold_all_but_the_interactive_share(org: int, share: float, slots: int) -> None:
    assert Limits(org_concurrent_tasks=org, batch_interactive_share=share).batch_slots() == slots


def test_a_batch_line_takes_a_batch_slot_of_its_organisation_besides_the_usual_counters() -> None:
    limits = Limits(org_concurrent_tasks=20)
    kwargs = {"now": 125.0, "tenant_id": "t", "subject": "u", "tokens": 50, "global_requests_per_min": 7}
    interactive = checks(limits, **kwargs)  # type: ignore[arg-type]
    line = checks(limits, batch=True, **kwargs)  # type: ignore[arg-type]
    assert "conc.batch.t" not in {c.key for c in interactive}
    assert line[: len(interactive)] == interactive  # everything an interactive request takes, then:
    [slot] = line[len(interactive) :]
    assert (slot.key, slot.kind, slot.limit, slot.delta, slot.reset_at) == (
        "conc.batch.t",
        "concurrency",
        10,
        1,
        None,
    )
