"""The batches' metrics, read off the changes of their records (`BatchStore.change`): each change is
written by one replica's compare-and-set, so what it tells is counted once, whichever replica runs the
batch, and a batch taken over by another replica is not counted again.

A line is counted once its result is known and every line before it has one: the record's `below` (the
results of the lines before `done_below`, written as the runner renews its lease) only ever grows, even
across a takeover, where the runner's other counts start again from it. When the batch ends, its final
`request_counts` count every line: what they hold beyond `below` is counted then, and the lines that never
ran as the batch's end (cancelled, expired)."""

from __future__ import annotations

from switchyard.gateway.batches.models import TERMINAL, BatchRecord, RequestCounts
from switchyard.gateway.metrics import BATCH_LINES, BATCHES_FINISHED

NOT_RUN = ("cancelled", "expired")  # a batch that ends so leaves its unfinished lines as that outcome


def count(before: BatchRecord, after: BatchRecord) -> None:
    """Counts the lines and the batch's end that the change from `before` to `after` tells."""
    if before.batch.status in TERMINAL:
        return
    status = after.batch.status
    known = after.batch.request_counts if status in TERMINAL else after.below
    for outcome, grew in _grown(before.below, known).items():
        if grew > 0:
            BATCH_LINES.labels(outcome).inc(grew)
    if status not in TERMINAL:
        return
    BATCHES_FINISHED.labels(status).inc()
    unfinished = known.total - known.completed - known.failed
    if status in NOT_RUN and unfinished > 0:
        BATCH_LINES.labels(status).inc(unfinished)


def _grown(counted: RequestCounts, known: RequestCounts) -> dict[str, int]:
    return {
        "completed": known.completed - counted.completed,
        "failed": known.failed - counted.failed,
    }
