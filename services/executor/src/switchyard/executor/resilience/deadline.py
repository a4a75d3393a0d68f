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

    @classmethod
    def within(cls, seconds: float, *, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    @classmethod
    def for_task(
        cls, *, budget_s: float, task_deadline: datetime | None, now: datetime, clock: Clock = time.monotonic
    ) -> Deadline:
        """The earlier of this executor's budget and the deadline the task itself carries."""
        seconds = budget_s
        if task_deadline is not None:
            seconds = min(seconds, (task_deadline - now).total_seconds())
        return cls.within(max(seconds, 0.0), clock=clock)

    def remaining(self) -> float:
        return max(self.at - self.clock(), 0.0)

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def clamp(self, timeout_s: float | None) -> float:
        """A call's timeout, shortened to what is left of the task's budget."""
        left = self.remaining()
        return left if timeout_s is None else min(timeout_s, left)
