"""`--tenant` of the operator's commands (`billing`, `ledger report`): an organisation's id, else its name
(`switchyard up`'s organisation is named `dev`; its id is random)."""

from __future__ import annotations

import sys

from sqlalchemy import or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.gateway.models import Tenant

HELP = "the organisation (tenant): its id or its name"


async def tenant_id(sessions: async_sessionmaker[AsyncSession], given: str) -> str:
    """The id `given` names. A tenant no organisation has is read as given, with a note (it may be a typo):
    tasks published on the bus carry a tenant id of their own, and a database of one service's tables has
    no organisations."""
    wanted = select(Tenant.id).where(or_(Tenant.id == given, Tenant.name == given))
    try:
        async with sessions() as session:
            found = list((await session.execute(wanted)).scalars())
    except DBAPIError:  # no organisations table here
        return given
    if not found:
        print(
            f"note: no organisation has the id or name {given!r}; reading it as a tenant id", file=sys.stderr
        )
    return given if given in found or not found else found[0]
