"""An organisation keeps at least one enabled admin even when its last two admins are demoted or disabled
at the same instant, through two gateway replicas (two engines) on SQLite and PostgreSQL: one change
succeeds, the other is refused (409 conflict), never both."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from switchyard.common.db import create_engine, sessionmaker
from switchyard.gateway.access import service
from switchyard.gateway.access.models import UserUpdate
from switchyard.gateway.db import migrations
from switchyard.gateway.errors import Conflict
from switchyard.gateway.models import User
from switchyard.gateway.tenants import create_tenant, create_user

pytestmark = pytest.mark.integration

ROUNDS = 5


@pytest.mark.parametrize("change", ["demote", "disable", "one of each"])
async def test_the_last_two_admins_changed_at_once_leave_one(db_url: str, change: str) -> None:
    await migrations().upgrade(db_url)
    engines = [create_engine(db_url) for _ in range(2)]  # two replicas, each its own pool
    replicas = [sessionmaker(e) for e in engines]
    try:
        for round_ in range(ROUNDS):
            org = await create_tenant(replicas[0], name=f"acme-{change}-{round_}", plan="pro")
            admins = [
                await create_user(replicas[0], tenant_id=org.id, email=f"a{i}@acme.test", role="admin")
                for i in range(2)
            ]

            async def act(i: int, org_id: str, user_id: str) -> str:
                kind = change if change != "one of each" else ("demote", "disable")[i]
                try:
                    if kind == "demote":
                        await service.update_user(
                            replicas[i], tenant_id=org_id, user_id=user_id,
                            changes=UserUpdate(role="member"),
                        )  # fmt: skip
                    else:
                        await service.disable_user(replicas[i], tenant_id=org_id, user_id=user_id)
                except Conflict:
                    return "refused"
                return "done"

            outcomes = sorted(await asyncio.gather(*(act(i, org.id, a.id) for i, a in enumerate(admins))))
            async with replicas[0]() as s:
                left = await s.scalar(
                    select(func.count()).where(
                        User.tenant_id == org.id, User.role == "admin", User.disabled_at.is_(None)
                    )
                )
            assert (outcomes, left) == (["done", "refused"], 1), f"round {round_}: {outcomes}, {left} admins"
    finally:
        for engine in engines:
            await engine.dispose()
