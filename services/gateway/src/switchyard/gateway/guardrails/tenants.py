"""Tenant ids named by the guardrail file's `tenants` (and by SWITCHYARD_CACHE_TENANTS) that no organisation
has. A typo, or an organisation's name written where its id goes, leaves that organisation with the plan's
and the defaults' settings, silently: the gateway warns at start (a log line per id, with the organisation
whose name it is, and the gauge `switchyard_gateway_unknown_tenants{source}`), and `switchyard guardrails
check` exits 1 naming them. Not refused at start: a file may name an organisation before it is created,
and an organisation erased must not stop every replica's next restart."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.gateway.guardrails.models import GuardrailFile
from switchyard.gateway.metrics import UNKNOWN_TENANTS
from switchyard.gateway.models import Tenant

log = logging.getLogger(__name__)


async def unknown_tenants(
    sessions: async_sessionmaker[AsyncSession], ids: Collection[str]
) -> dict[str, str | None]:
    """Each of `ids` that no organisation has, with the id of the organisation whose name it is (else
    None)."""
    if not ids:
        return {}
    async with sessions() as session:
        known = set((await session.scalars(select(Tenant.id).where(Tenant.id.in_(list(ids))))).all())
        missing = [i for i in ids if i not in known]
        if not missing:
            return {}
        rows = await session.execute(select(Tenant.name, Tenant.id).where(Tenant.name.in_(missing)))
        named: dict[str, str] = {name: ident for name, ident in rows}
    return {i: named.get(i) for i in missing}


def describe(tenant: str, named: str | None) -> str:
    if named is not None:
        return f"{tenant!r} is no organisation's id; it is the name of organisation {named}: write its id"
    return f"{tenant!r} is no organisation's id (a typo, or an organisation not created yet)"


async def warn_unknown_tenants(
    sessions: async_sessionmaker[AsyncSession],
    file: GuardrailFile | None,
    *,
    cache_tenants: Mapping[str, object],
) -> None:
    """Logs each unknown tenant id of the guardrail file and of the cache's settings, and sets the gauge
    per source. A database that cannot be read is logged, not raised: the check is advice."""
    sources = {"guardrails": list(file.tenants) if file is not None else [], "cache": list(cache_tenants)}
    where = {"guardrails": "guardrail file (SWITCHYARD_GUARDRAILS_PATH)", "cache": "SWITCHYARD_CACHE_TENANTS"}
    for source, ids in sources.items():
        try:
            unknown = await unknown_tenants(sessions, ids)
        except Exception as exc:
            log.warning("could not check the tenant ids of the %s: %s", where[source], exc)
            continue
        UNKNOWN_TENANTS.labels(source).set(len(unknown))
        for tenant, named in unknown.items():
            log.warning(
                "%s: tenants: %s; its settings apply to nobody", where[source], describe(tenant, named)
            )
