"""Keys heard lately (cancelled tasks, stored objects), kept for a while and in a bounded number."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Recent(Generic[K]):
    """At most `most` keys, each forgotten `keep_s` after it was heard; the first heard go first."""

    def __init__(self, *, keep_s: float, most: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._keep_s = keep_s
        self._most = most
        self._clock = clock
        self._heard: OrderedDict[K, float] = OrderedDict()  # key -> when heard

    def add(self, key: K, *, age_s: float = 0.0) -> None:
        """`key`, heard `age_s` ago (never later than now: a clock ahead of ours makes it new, not newer)."""
        now = self._clock()
        self._heard[key] = now - max(age_s, 0.0)
        self._heard.move_to_end(key)
        while self._heard and (
            len(self._heard) > self._most or next(iter(self._heard.values())) < now - self._keep_s
        ):
            self._heard.popitem(last=False)

    def __contains__(self, key: K) -> bool:
        heard = self._heard.get(key)
        return heard is not None and heard >= self._clock() - self._keep_s

    def pop(self, key: K) -> bool:
        """Forgets `key`; whether it was still remembered."""
        heard = self._heard.pop(key, None)
        return heard is not None and heard >= self._clock() - self._keep_s
