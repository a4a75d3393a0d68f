"""Provider calls folded into the models' shared statistics, a batch at a time.

Every provider call is an event; folding each into its model's KV entry on its own cost a compare-and-set
(a JetStream write, and its JSON read and written again) per call, in the router and in nats-server.
Calls for one model that arrive within `linger_s` of each other are folded in one compare-and-set
instead. Each event's handler still waits until the write that holds its call succeeded, so an event is
acked only once its call is stored (a failed write fails every handler of the batch: those events are
redelivered, and the event ids kept in the statistics make that idempotent). The statistics are advice
that the router reads at most every `health_refresh_s` anyway, so a tenth of a second changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from nats.js.kv import KeyValue

from switchyard.common import kv, kv_repair
from switchyard.common.background import Background
from switchyard.common.batching import Pending
from switchyard.common.events import ProviderCallRecorded
from switchyard.router.health import RECENT_IDS, ModelStats, observe

Clock = Callable[[], float]
DEFAULT_LINGER_S = 0.1


# event id, the call, the EMA alpha, and the policy's recovery_s (None: no fading)
Call = tuple[str, ProviderCallRecorded, float, float | None]


def fold(current: bytes | None, calls: list[Call], *, now: float) -> tuple[bytes | None, list[bool]]:
    """The stored statistics after `calls` (event id, call, EMA alpha, recovery_s) in order, or None when
    none of them changes anything; and, per call, whether it was counted (not a duplicate, an outcome that
    counts)."""
    stats = ModelStats.model_validate_json(current) if current else None
    counted = []
    for event_id, call, alpha, recovery_s in calls:
        new = observe(
            stats,
            event_id=event_id,
            outcome=call.outcome,
            latency_ms=call.latency_ms,
            alpha=alpha,
            now=now,
            recovery_s=recovery_s,
        )
        counted.append(new is not None)
        stats = new or stats
    if stats is None or not any(counted):
        return None, counted
    return stats.model_dump_json().encode(), counted


class StatsWriter:
    def __init__(
        self,
        bucket: Callable[[], Awaitable[KeyValue]],
        *,
        linger_s: float = DEFAULT_LINGER_S,
        max_batch: int = RECENT_IDS,
        clock: Clock = time.time,
    ) -> None:
        self._bucket = bucket
        self._linger_s = linger_s
        self._max_batch = min(max_batch, RECENT_IDS)  # a batch must fit the remembered ids, for dedup
        self._clock = clock
        self._batches: dict[str, list[Pending[Call, bool]]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._writes = Background()  # each write is awaited by the handlers of its batch
        self._kv: KeyValue | None = None  # looked up once (each look-up is a JetStream API request)
        self._keeper: kv_repair.Keeper | None = None  # once started

    async def start(self) -> None:
        """Watches the bucket (kv_repair.Keeper): a forged revision is written over with the last real
        statistics at once, and a fold never starts from one. `stop` at shutdown."""
        if self._kv is None:
            self._kv = await self._bucket()
        if self._keeper is None:
            self._keeper = kv_repair.Keeper(self._kv, name="routing-stats-kept")
            await self._keeper.start()

    async def stop(self) -> None:
        if self._keeper is not None:
            await self._keeper.stop()

    async def record(
        self, event_id: str, call: ProviderCallRecorded, *, alpha: float, recovery_s: float | None = None
    ) -> bool:
        """Folds one call into its model's statistics (`recovery_s`: the policy's, see `observe`); returns
        once that is stored. False when it changed nothing (a duplicate event, an outcome that says nothing
        about health)."""
        loop = asyncio.get_running_loop()
        key = kv.safe_key(call.model)
        done: asyncio.Future[bool] = loop.create_future()
        batch = self._batches.setdefault(key, [])
        batch.append(Pending((event_id, call, alpha, recovery_s), done))
        if len(batch) >= self._max_batch:
            self._flush(key)
        elif key not in self._timers:
            self._timers[key] = loop.call_later(self._linger_s, self._flush, key)
        return await done

    def _flush(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        batch = self._batches.pop(key, [])
        if batch:
            self._writes.spawn(self._write(key, batch))

    async def _write(self, key: str, batch: list[Pending[Call, bool]]) -> None:
        calls = [p.item for p in batch]
        try:
            if self._kv is None:
                self._kv = await self._bucket()
            reader = kv.read if self._keeper is None else self._keeper.read_over
            counted = await kv.update(
                self._kv, key, lambda raw: fold(raw, calls, now=self._clock()), reader=reader
            )
        except Exception as exc:  # every handler of the batch fails with it: its event is redelivered
            for p in batch:
                p.fail(exc)
            return
        for p, changed in zip(batch, counted, strict=True):
            p.done(changed)
