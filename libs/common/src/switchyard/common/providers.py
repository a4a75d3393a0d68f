"""Which providers the executors can reach, shared through JetStream KV.

Executors hold the provider keys and announce what they can call; the router and the gateway read the
announcements (they never see a key). A provider nobody announced is not routed to, nor one whose
announcement no executor has renewed for STALE_S: an executor announces its providers again every
ANNOUNCE_EVERY_S, so a provider whose last executor was killed, stopped or reconfigured without it stops
being routed to within STALE_S, where its tasks would wait for an executor that never comes. An
announcement that names no executor (`announced_by` empty: written by hand, as an operator or a test
may) does not go stale.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from switchyard.common import kv as kv_store
from switchyard.common import kv_repair, subjects

log = logging.getLogger(__name__)


ANNOUNCE_EVERY_S = 30.0
STALE_S = 3 * ANNOUNCE_EVERY_S + 5.0  # three renewals missed, and clocks a few seconds apart


class ProviderStatus(BaseModel):
    provider: str = Field(pattern=r"^[a-z0-9_-]+$")
    available: bool = True
    endpoint: str = Field(default="", description="where calls go (host only, never a key)")
    announced_by: str = ""
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


async def providers_bucket(js: JetStreamContext) -> KeyValue:
    return await kv_store.bucket(js, subjects.KV_PROVIDERS)


async def keep(bucket: KeyValue) -> kv_repair.Keeper:
    """An executor's watch writing the last real announcement back over a forged one (kv_repair): a
    router reads the bucket anew before each decision, so a forged one would take the provider away from
    every router until its next announcement. `stop` it at shutdown."""
    keeper = kv_repair.Keeper(bucket, name="providers-kept")
    await keeper.start()
    return keeper


async def announce(kv: KeyValue, status: ProviderStatus) -> None:
    await kv.put(status.provider, status.model_dump_json().encode())


async def keep_announced(
    kv: KeyValue, statuses: Callable[[], list[ProviderStatus]], *, every_s: float = ANNOUNCE_EVERY_S
) -> None:
    """Announces `statuses()` (each stamped now) every `every_s`, until cancelled; a round the bus refuses
    is logged and the next one tries again."""
    while True:
        await asyncio.sleep(every_s)
        try:
            for status in statuses():
                await announce(kv, status)
        except Exception:
            log.warning("providers not announced again; next try in %.0f s", every_s)


async def read_all(kv: KeyValue) -> dict[str, ProviderStatus]:
    out: dict[str, ProviderStatus] = {}
    for value in (await kv_store.read_all(kv)).values():
        status = ProviderStatus.model_validate_json(value)
        out[status.provider] = status
    return out


def available(statuses: dict[str, ProviderStatus], *, now: datetime | None = None) -> set[str]:
    """The providers announced available, by an executor that renewed its announcement within STALE_S (or
    by hand: no executor named)."""
    at = now or datetime.now(UTC)

    def fresh(status: ProviderStatus) -> bool:
        updated = status.updated_at if status.updated_at.tzinfo else status.updated_at.replace(tzinfo=UTC)
        return not status.announced_by or (at - updated).total_seconds() <= STALE_S

    return {name for name, s in statuses.items() if s.available and fresh(s)}


class AvailableProviders:
    """The names of the providers the executors announced as available, re-read from KV at most every
    `refresh_s` seconds (and on every call while none is known yet).

    `js` is a callable because a service's JetStream context exists only once its broker is connected.
    """

    def __init__(self, js: Callable[[], JetStreamContext], *, refresh_s: float) -> None:
        self._js = js
        self._refresh_s = refresh_s
        self._at = 0.0
        self._names: set[str] = set()

    async def names(self) -> set[str]:
        now = time.monotonic()
        if now - self._at > self._refresh_s or not self._names:
            self._names = available(await read_all(await providers_bucket(self._js())))
            self._at = now
        return self._names


# Provider state the executors share (circuit breakers, rpm/tpm buckets) in JetStream KV. The executors
# write these records with compare-and-set; the router reads them to order its candidate chains. Times
# are wall-clock seconds (time.time()): replicas on different hosts compare them.


class BreakerRecord(BaseModel):
    state: str = "closed"  # closed | open | half_open
    failures: int = 0  # consecutive
    opened_at: float = 0.0
    probes: int = 0
    probe_started: float = 0.0
    open_s: float = 60.0

    def effective_state(self, now: float) -> str:
        """An open breaker whose cool-down is over lets a probe through: it is half open."""
        if self.state == "open" and now - self.opened_at >= self.open_s:
            return "half_open"
        return self.state


class BucketLevel(BaseModel):
    capacity: float
    level: float
    at: float

    def refilled(self, now: float) -> float:
        return min(self.capacity, self.level + max(now - self.at, 0.0) * self.capacity / 60.0)


class RateRecord(BaseModel):
    buckets: dict[str, BucketLevel] = Field(default_factory=dict)  # "rpm", "tpm"

    def headroom(self, now: float) -> float:
        """The fullest share left of the tightest bucket, 0..1 (1 with no bucket)."""
        shares = [b.refilled(now) / b.capacity for b in self.buckets.values() if b.capacity > 0]
        return min(shares, default=1.0)
