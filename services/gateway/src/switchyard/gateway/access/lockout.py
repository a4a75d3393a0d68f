"""Key guessing is throttled: repeated authentication failures from one client address, or against one
API-key prefix, block further attempts from it (a prefix: further wrong keys with it) with 429 and
Retry-After until the window ends. An IPv6 client is counted by its /64, the smallest network a
subscriber is given (RFC 6177): counted per address, one subscriber has 2^64 of them.

Failures are counted with compare-and-set in the gateway's limits bucket (JetStream KV), so every replica
counts the same attempts. The replica whose count reaches the limit writes a block (`authblock.<kind>.<id>`
with its end); every replica watches those keys, so the check on each request is a dictionary lookup, not
a round trip. Every failure is recorded as an event for the audit ledger (never the credential: an API
key by its public prefix at most); while blocked, one event per block and replica says so.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from switchyard.common import kv_guard, subjects
from switchyard.common.bus import EventPublisher
from switchyard.common.events import AuthFailureRecorded
from switchyard.common.leases import IntCounters
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.errors import RateLimited
from switchyard.gateway.limits.counters import counter_bucket
from switchyard.gateway.metrics import AUTH_FAILURES

log = logging.getLogger(__name__)

BLOCK_PREFIX = "authblock"
KEEP_BLOCKS = 10_000
_UNSAFE = re.compile(r"[^A-Za-z0-9_=-]")

Credential = Literal["none", "api_key", "jwt"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """Who tried, with what kind of credential, where (never the credential itself)."""

    client: str
    credential: Credential
    key_prefix: str | None
    endpoint: str
    request_id: str


def _token(value: str) -> str:
    """A KV-key-safe form of an address or prefix (IPv6 colons, dots)."""
    return _UNSAFE.sub("_", value)[:128] or "_"


def client_of(address: str) -> str:
    """What failures are counted against: an IPv4 address (an IPv4-mapped IPv6 one's too), an IPv6
    address's /64 network, anything else (a proxy's `unknown`) as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Lockout:
    def __init__(
        self,
        kv: KeyValue,
        events: EventPublisher | None,
        *,
        window_s: int = 300,
        client_failures: int = 50,
        prefix_failures: int = 20,
    ) -> None:
        self._kv = kv
        self._counters = IntCounters(kv)
        self._events = events
        self.window_s = window_s
        self.limits = {"client": client_failures, "prefix": prefix_failures}
        self._blocked: dict[str, float] = {}  # "client.<addr>" -> epoch seconds the block ends
        self._reported: set[tuple[str, float]] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        watcher = await kv_guard.watch(self._kv, f"{BLOCK_PREFIX}.>")
        self._task = asyncio.create_task(self._follow(watcher), name="auth-lockout")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _subjects(self, attempt: Attempt) -> list[str]:
        found = [f"client.{_token(client_of(attempt.client))}"]
        if attempt.key_prefix:
            found.append(f"prefix.{_token(attempt.key_prefix)}")
        return found

    async def check(self, attempt: Attempt) -> None:
        """Raises 429 while the client's address is blocked, whatever the credential: a guess that
        succeeded must not show. A blocked key prefix is checked only once its key failed (`failed`)."""
        if self._blocked:  # the usual case: nothing to look up
            await self._refuse_if_blocked(attempt, f"client.{_token(client_of(attempt.client))}")

    def blocks_prefix(self, prefix: str) -> bool:
        """Whether wrong keys with this prefix are refused now (a dictionary lookup): the caller then
        checks a presented key against the prefix's own before any query (`KeyVerifier.could_be`)."""
        until = self._blocked.get(f"prefix.{_token(prefix)}")
        return until is not None and until > time.time()

    async def _refuse_if_blocked(self, attempt: Attempt, subject: str) -> None:
        until = self._blocked.get(subject)
        now = time.time()
        if until is None:
            return
        if until <= now:
            self._blocked.pop(subject, None)
            return
        if (subject, until) not in self._reported:
            self._reported.add((subject, until))
            await self._record(attempt, "too_many_auth_failures", throttled=True)
        wait = max(math.ceil(until - now), 1)
        AUTH_FAILURES.labels("too_many_auth_failures", attempt.credential).inc()
        raise RateLimited(
            f"Too many failed authentication attempts from this {subject.partition('.')[0]}; "
            f"try again in {wait} s",
            code="too_many_auth_failures",
            headers={"retry-after": str(wait)},
        )

    async def failed(self, attempt: Attempt, *, reason: str) -> None:
        """Counts a failure against the client and the key prefix (blocking either at its limit) and
        records it; 429 instead while the key's prefix is blocked. Only failures answer to a prefix's
        block: its real key keeps working, or whoever saw a prefix (a listing, a log, these events)
        could lock its tenant out from anywhere, and a guess at a 190-bit secret never succeeds."""
        if attempt.key_prefix and self._blocked:
            await self._refuse_if_blocked(attempt, f"prefix.{_token(attempt.key_prefix)}")
        now = time.time()
        if len(self._blocked) + len(self._reported) > KEEP_BLOCKS:
            self._blocked = {k: v for k, v in self._blocked.items() if v > now}
            self._reported = {r for r in self._reported if r[1] > now}
        window = int(now // self.window_s)
        until = float((window + 1) * self.window_s)
        await self._record(attempt, reason, throttled=False)
        for subject in self._subjects(attempt):
            kind = subject.partition(".")[0]
            try:
                count = await self._counters.add(f"authfail.{subject}.{window}", 1)
                if count >= self.limits[kind] and self._blocked.get(subject, 0.0) < until:
                    self._blocked[subject] = until
                    await self._kv.put(f"{BLOCK_PREFIX}.{subject}", str(until).encode())
            except Exception:  # the 401 stands; counting it is best effort when the bus is down
                log.exception("could not count an authentication failure")

    async def _record(self, attempt: Attempt, reason: str, *, throttled: bool) -> None:
        if not throttled:  # throttled requests are counted in `check`, each one
            AUTH_FAILURES.labels(reason, attempt.credential).inc()
        if self._events is None:
            return
        event = AuthFailureRecorded(
            reason=reason,
            credential=attempt.credential,
            key_prefix=attempt.key_prefix,
            client=attempt.client,
            endpoint=attempt.endpoint,
            throttled=throttled,
            request_id=attempt.request_id,
            at=datetime.now(UTC),
        )
        try:
            eid = self._events.derived_id(attempt.request_id, "auth_failure", tenant_id="")  # no tenant known
            await self._events.publish(event, event_id=eid)
        except Exception:
            log.exception("could not record an authentication failure")

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None or not entry.value:
                continue
            subject = entry.key.removeprefix(f"{BLOCK_PREFIX}.")
            try:
                until = float(entry.value)
            except ValueError:
                log.warning("ignoring an invalid block %s=%r", entry.key, entry.value)
                continue
            if until > time.time() and until > self._blocked.get(subject, 0.0):
                self._blocked[subject] = until


async def from_settings(
    settings: GatewaySettings, js: JetStreamContext, events: EventPublisher | None, *, keep_s: float
) -> Lockout | None:
    if not settings.auth_lockout_enabled:
        return None
    lockout = Lockout(
        await counter_bucket(js, subjects.KV_GATEWAY_LIMITS, ttl_s=keep_s),
        events,
        window_s=settings.auth_lockout_window_s,
        client_failures=settings.auth_lockout_client_failures,
        prefix_failures=settings.auth_lockout_prefix_failures,
    )
    await lockout.start()
    return lockout
