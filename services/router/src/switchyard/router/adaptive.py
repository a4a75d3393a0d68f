"""The adaptive premium threshold: route the hardest `premium_share` of recent traffic to premium.

A fixed complexity threshold depends on how the classifier is calibrated (a retrained classifier moves
every score) and on the traffic's mix; a share of premium calls is what an operator budgets for. Each
router replica keeps the complexities of the last `window` tasks it routed (replicas see random slices of
one work queue, so their estimates agree) and uses their upper quantile as the threshold.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable

from switchyard.common.policy import Thresholds


class RollingQuantile:
    def __init__(self, window: int) -> None:
        self._window = window
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._sorted)

    def add(self, value: float, *, window: int | None = None) -> None:
        """`window`: the policy's in force, when it may have changed (a reload): the oldest values beyond
        it leave now, and a larger one keeps more from here on."""
        if window is not None:
            self._window = window
        self._recent.append(value)
        bisect.insort(self._sorted, value)
        while len(self._recent) > self._window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def upper(self, share: float) -> float:
        """The value above which `share` of the samples lie (so `x > upper(share)` selects that share)."""
        n = len(self._sorted)
        below = min(max(round(n * (1.0 - share)), 1), n)
        return self._sorted[below - 1]

    def threshold(self, share: float, *, min_samples: int) -> float | None:
        """The premium threshold for `share`, or None while fewer than `min_samples` tasks were seen."""
        return self.upper(share) if len(self) >= min_samples else None


def premium_threshold(recent: RollingQuantile) -> Callable[[Thresholds], float | None]:
    """`decide`'s `adaptive_premium` over `recent`: the threshold of the thresholds' `premium_share`, None
    without a share or while the window warms up."""

    def threshold(th: Thresholds) -> float | None:
        share = th.premium_share
        return None if share is None else recent.threshold(share, min_samples=th.min_samples)

    return threshold
