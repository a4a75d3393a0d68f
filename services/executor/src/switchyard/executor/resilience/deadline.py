"""A task's total time budget, which every call and every backoff of that task must fit in."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Deadline:
    at: float  # on `clock`'s scale
    clock: Clock = field(default=time.monotonic, compare=False)
    # Shorter than the executor's own deadline for a task (a client that waits less, or a deadline the task
    # carries; not time it waited on the bus: budget.py): a stream's first output it bounds is cut short by
    # it (`RetryingProvider`).
    tightened: bool = False

    @classmethod
    def within(cls, seconds: float, *, clock: Clock = time.monotonic, tightened: bool = False) -> Deadline:
        return cls(clock() + seconds, clock, tightened)

    def remaining(self) -> float:
        return max(self.at - self.clock(), 0.0)

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def clamp(self, timeout_s: float | None) -> float:
        """A call's timeout, shortened to what is left of the task's budget."""
        left = self.remaining()
        return left if timeout_s is None else min(timeout_s, left)
