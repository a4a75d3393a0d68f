"""A task's total time budget, which every call and every backoff of that task must fit in."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Deadline:
    at: float  # on `clock`'s scale
    clock: Clock = field(default=time.monotonic, compare=False)
    # Shorter than the executor's own deadline for a task (a client that waits less, or a deadline the task
    # carries): a stream's first output it bounds is cut short by it (`RetryingProvider`).
    tightened: bool = False

    @classmethod
    def within(cls, seconds: float, *, clock: Clock = time.monotonic, tightened: bool = False) -> Deadline:
        return cls(clock() + seconds, clock, tightened)

    @classmethod
    def for_task(
        cls,
        *,
        budget_s: float,
        task_deadline: datetime | None,
        now: datetime,
        own_s: float | None = None,
        clock: Clock = time.monotonic,
    ) -> Deadline:
        """The earlier of this executor's budget and the deadline the task itself carries; `tightened` when
        that is shorter than `own_s`, the executor's own budget."""
        seconds = budget_s
        if task_deadline is not None:
            seconds = min(seconds, (task_deadline - now).total_seconds())
        return cls.within(max(seconds, 0.0), clock=clock, tightened=own_s is not None and seconds < own_s)

    def remaining(self) -> float:
        return max(self.at - self.clock(), 0.0)

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def clamp(self, timeout_s: float | None) -> float:
        """A call's timeout, shortened to what is left of the task's budget."""
        left = self.remaining()
        return left if timeout_s is None else min(timeout_s, left)
