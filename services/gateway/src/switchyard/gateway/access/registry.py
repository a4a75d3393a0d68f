"""The gateway keeps the tenant registry (common/tenants.py) true to its database, which the pipeline
services do not read: every organisation active, an erased one erased.

- At start, and every SWITCHYARD_TENANT_SYNC_S after (a bucket lost with its NATS cluster, a write that
  failed), every organisation is written (only those that differ), then `kept` (the pipeline refuses
  other tenants from then on). A deployment upgraded to this version is registered by its first gateway.
- An organisation created through the admin API is registered before the call answers, and an erased one
  marked erased once its keys are revoked.
- A tenant whose key authenticates is registered once per replica (an organisation `switchyard db
  bootstrap` made while the gateways ran, for one): a key that works is never refused by the pipeline.
- A revision the JetStream server stored on a client's behalf (common/kv_guard.py: a forged entry that
  would have a replica started since refuse an organisation, or `kept` read as unset) starts a round at
  once: the database's value is written over it within a round trip, not at the next interval.

Entries the database does not hold (a bus-only deployment's `switchyard tenants add`) are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js.kv import KeyValue
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.common import kv_guard, tenants
from switchyard.common.background import cancel
from switchyard.gateway.models import Tenant

log = logging.getLogger(__name__)
REPAIR_GAP_S = 0.2


class Registry:
    def __init__(
        self, bucket: KeyValue, sessions: async_sessionmaker[AsyncSession], *, every_s: float
    ) -> None:
        self._bucket = bucket
        self._sessions = sessions
        self._every_s = every_s
        self._seen: set[str] = set()  # tenants whose keys authenticated here and are registered
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._forged = asyncio.Event()  # a forged revision seen: a round now

    async def start(self) -> None:
        await self.sync()
        self._watch = await kv_guard.on_forged(
            self._bucket, lambda _key: self._forged.set(), name="tenant-registry-forged"
        )
        self._task = asyncio.create_task(self._again(), name="tenant-registry-sync")

    async def stop(self) -> None:
        await cancel(self._task)
        await cancel(self._watch)
        self._task = self._watch = None

    async def _again(self) -> None:
        while True:
            forced = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._every_s):
                    forced = await self._forged.wait()
            self._forged.clear()
            if forced:  # a forger sets the pace of these rounds: at most one a REPAIR_GAP_S
                await asyncio.sleep(REPAIR_GAP_S)
            try:
                await self.sync()
            except Exception as exc:  # the bus or the database is away: the next round tries again
                log.warning(
                    "tenant registry sync failed (%s: %s); next in %.0f s",
                    type(exc).__name__,
                    exc,
                    self._every_s,
                )

    async def sync(self) -> int:
        """Writes every organisation of the database that the bucket holds otherwise; how many."""
        async with self._sessions() as s:
            rows = (await s.execute(select(Tenant.id, Tenant.name, Tenant.erased_at))).all()
        held = await tenants.glimpse(self._bucket)
        written = 0
        for tenant_id, name, erased_at in rows:
            have = held.get(tenant_id)
            want = "active" if erased_at is None else "erased"
            if have is not None and (have.status == "erased" or (have.status, have.name) == (want, name)):
                continue  # as the database says (or erased, which nothing brings back): no round trip
            if erased_at is not None:
                written += await tenants.erase(self._bucket, tenant_id, name=name)
            else:
                written += await tenants.register(self._bucket, tenant_id, name=name)
        await tenants.mark_kept(self._bucket, by="gateway")
        if written:
            log.info("tenant registry: %d of %d organisations written", written, len(rows))
        return written

    async def created(self, tenant_id: str, name: str) -> None:
        await tenants.register(self._bucket, tenant_id, name=name)
        self._seen.add(tenant_id)

    async def erased(self, tenant_id: str, name: str) -> None:
        await tenants.erase(self._bucket, tenant_id, name=name)
        self._seen.discard(tenant_id)

    async def authenticated(self, tenant_id: str, name: str) -> None:
        """A key of `tenant_id` worked: its tenant is registered (once per replica; an erased one stays
        erased)."""
        if tenant_id in self._seen:
            return
        await tenants.register(self._bucket, tenant_id, name=name)
        self._seen.add(tenant_id)
