"""How long a task may still take when an executor takes it: its bounds count from its acceptance.

A task's submitter waits from the moment it accepted the task (`TaskSubmitted.submitted_at`): the gateway
holds its client's request that long, less a margin. Time the task then spends on the bus (a backlog at
the classifier, router or executors, a redelivery after an executor crashed) is spent of that wait. So
the budget (`timeout_s`, else the executor's own SWITCHYARD_TASK_DEADLINE_S) counts from `submitted_at`,
and `deadline` bounds the whole run from the same clock; a task whose bound has passed is not run
(`task_expired`): its client has its timeout, and an answer now would be paid for by nobody's request.

Two tasks count their budget from their start instead: one that says so (`timeout_from: started`: nobody
waits for it on a connection, a task API task or a batch line, which may queue; its `deadline` bounds the
wait) and a bus task without `timeout_s` (published by a system that said nothing of waiting: it gets the
executor's own budget, as before, and its `deadline` if it has one).

Clocks: `submitted_at` and `deadline` are the submitter's clock, `now` this executor's. The length of a
bound (`deadline - submitted_at`) is read on one clock, so only the wait (`now - submitted_at`) depends on
the two agreeing, which is assumed to within about a second (NTP, as on every host of a cluster). A clock
behind the submitter's counts no wait (never more than the whole budget); one ahead counts too much, and a
task it leaves less than `floor_s` to (a tenth of its bound, at most `MIN_LEFT_S`) gets that much, so
that a second of skew does not cut a task its client still waits for to nothing: the gateway waits a tenth
of its bound (at most 10 s) longer than the task's bound, so the executor's cut still reaches the client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

MIN_LEFT_S = 1.0


@dataclass(frozen=True, slots=True)
class Budget:
    """`left_s`: what the task has from now (0: its bound passed before it started). `bound_s`: its
    budget's whole length as set (the shortest of its bounds). `waited_s`: since its submission, on the
    two clocks, where that counted against a bound (else 0; 0 too when this clock is behind).
    `tightened`: its submitter's bounds are shorter than the executor's own budget (their choice; time
    queued does not make it so). `cap_s`: what is left of a stream's whole run (SWITCHYARD_STREAM_MAX_S
    from its start, within `deadline`)."""

    left_s: float
    bound_s: float
    waited_s: float
    tightened: bool
    cap_s: float

    @property
    def expired(self) -> bool:
        return self.left_s <= 0.0

    def why_expired(self) -> str:
        if self.bound_s <= 0.0:
            return "the task's deadline was no later than its submission; it was not sent to a model"
        return (
            f"the task waited {self.waited_s:.1f} s after its submission before this executor took it (a "
            f"queue, or an executor that stopped running it), past its bound of {seconds(self.bound_s)} s; "
            "this executor did not send it to a model"
        )


def budget(
    *,
    own_s: float,
    asked_s: float | None,
    stream_max_s: float,
    deadline: datetime | None,
    submitted_at: datetime,
    counts_from_submission: bool,
    now: datetime,
) -> Budget:
    """The budget of a task taken `now`: `asked_s` (its `timeout_s`, already within the stream cap) or
    `own_s`, from its submission when `counts_from_submission` else from now, within its `deadline`."""
    waited = max((_aware(now) - _aware(submitted_at)).total_seconds(), 0.0)
    run_s = own_s if asked_s is None else asked_s
    until_deadline = None if deadline is None else (_aware(deadline) - _aware(submitted_at)).total_seconds()
    bound, left, cap = run_s, run_s - waited if counts_from_submission else run_s, stream_max_s
    if until_deadline is not None:
        bound, left = min(bound, until_deadline), min(left, until_deadline - waited)
        cap = min(cap, until_deadline - waited)
    if left > 0.0:
        floor = min(MIN_LEFT_S, bound / 10)
        left, cap = max(left, floor), max(cap, floor)
    return Budget(
        left_s=max(left, 0.0),
        bound_s=bound,
        waited_s=waited if counts_from_submission or until_deadline is not None else 0.0,
        tightened=bound < own_s,
        cap_s=max(cap, 0.0),
    )


def seconds(value: float) -> str:
    """A bound as a person reads it: 9, not 8.99858 (the gateway's bound less its own time)."""
    return f"{round(value, 2):g}"


def _aware(moment: datetime) -> datetime:
    """A naive datetime read as UTC (a bus submitter's, without its zone)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
