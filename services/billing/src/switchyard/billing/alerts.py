"""Budget alerts: when billed spend passes 50, 80 or 100 % of a user's daily or the organisation's monthly
budget, one alert per threshold, account, period and budget (a budget changed within its period is alerted
on again). The alert row is both the idempotency key (a unique
constraint) and the outbox of its event: it is published until the bus has acknowledged it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.billing.aggregates import from_e10
from switchyard.billing.models import BudgetAlert as AlertRow
from switchyard.billing.models import UsageDaily
from switchyard.billing.statements import month_bounds
from switchyard.common import ids
from switchyard.common.events import BudgetAlert

THRESHOLDS = (50, 80, 100)
MICRO_TO_E10 = 10_000  # 1e-6 USD = 1e4 x 1e-10 USD

Sessions = async_sessionmaker[AsyncSession]
LimitReader = Callable[[str, str | None], Awaitable[int | None]]  # (tenant, user or None) -> micro-USD


@dataclass(frozen=True, slots=True)
class Account:
    scope: str  # user | org
    account: str
    period: str
    first: date
    last: date
    user_id: str | None


def accounts_of(*, tenant_id: str, user_id: str | None, day: date) -> list[Account]:
    first, last = month_bounds(day.strftime("%Y-%m"))
    out = [Account("org", tenant_id, day.strftime("%Y%m"), first, last, None)]
    if user_id:
        out.append(Account("user", user_id, day.strftime("%Y%m%d"), day, day, user_id))
    return out


def crossed(spent_e10: int, limit_e10: int) -> list[int]:
    """The thresholds `spent` has reached. A zero budget is at 100 % as soon as anything is spent."""
    if limit_e10 <= 0:
        return list(THRESHOLDS) if spent_e10 > 0 else []
    return [t for t in THRESHOLDS if spent_e10 * 100 >= t * limit_e10]


async def _spent(session: AsyncSession, tenant_id: str, acct: Account) -> int:
    table = UsageDaily.__table__.c
    stmt = select(func.coalesce(func.sum(table.cost_e10), 0)).where(
        table.tenant_id == tenant_id, table.day >= acct.first, table.day <= acct.last
    )
    if acct.user_id is not None:
        stmt = stmt.where(table.user_id == acct.user_id)
    return int((await session.execute(stmt)).scalar_one())


async def check(
    sessions: Sessions,
    limits: LimitReader,
    *,
    tenant_id: str,
    user_id: str | None,
    day: date,
    now: datetime | None = None,
) -> int:
    """Records the alerts the spend of `day` has earned (each once, ever). Returns how many are new."""
    new = 0
    for acct in accounts_of(tenant_id=tenant_id, user_id=user_id, day=day):
        micro = await limits(tenant_id, acct.user_id)
        if micro is None:
            continue
        limit_e10 = micro * MICRO_TO_E10
        async with sessions() as session, session.begin():
            spent = await _spent(session, tenant_id, acct)
            for threshold in crossed(spent, limit_e10):
                new += await _insert_once(
                    session,
                    AlertRow(
                        # Its event's id: random, never derived from what another bus user knows (the
                        # organisation, a user, the day, a budget), who could publish under it first and have
                        # the stream drop the alert as a duplicate. Once per alert all the same: the row's
                        # unique key keeps the first replica's insert, and every publish of it uses that id.
                        id=ids.new_id(),
                        tenant_id=tenant_id,
                        scope=acct.scope,
                        account=acct.account,
                        period=acct.period,
                        threshold_pct=threshold,
                        limit_e10=limit_e10,
                        spent_e10=spent,
                        published=False,
                        created_at=now or datetime.now(UTC),
                    ),
                )
    return new


ALERT_KEY = ("tenant_id", "scope", "account", "period", "threshold_pct")  # the table's unique constraint


async def _insert_once(session: AsyncSession, row: AlertRow) -> int:
    """The alert, once per threshold, account, period and budget: the threshold's row of the period is
    replaced (a new id, published again) only when the budget it was crossed against has changed since, as
    when an admin raises a budget whose alerts had fired; a redelivery or a re-check changes nothing."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = {c.name: getattr(row, c.name) for c in AlertRow.__table__.columns}
    stmt = insert(AlertRow).values(**values)
    changed = {k: v for k, v in values.items() if k not in ALERT_KEY}
    upsert = stmt.on_conflict_do_update(
        index_elements=list(ALERT_KEY), set_=changed, where=AlertRow.limit_e10 != stmt.excluded.limit_e10
    )
    result = await session.execute(upsert)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def unpublished(sessions: Sessions, *, tenant_id: str) -> list[AlertRow]:
    async with sessions() as session:
        stmt = (
            select(AlertRow)
            .where(AlertRow.tenant_id == tenant_id, AlertRow.published.is_(False))
            .order_by(AlertRow.created_at, AlertRow.threshold_pct)
        )
        return list((await session.execute(stmt)).scalars())


async def mark_published(sessions: Sessions, *, alert_id: str) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(AlertRow).where(AlertRow.id == alert_id).values(published=True))


def alert_event(row: AlertRow) -> BudgetAlert:
    return BudgetAlert(
        alert_id=row.id,
        tenant_id=row.tenant_id,
        scope=row.scope,
        user_id=row.account if row.scope == "user" else None,
        period=row.period,
        threshold_pct=row.threshold_pct,
        limit_usd=str(from_e10(row.limit_e10)),
        spent_usd=str(from_e10(row.spent_e10)),
        at=row.created_at,
    )
