"""`switchyard billing usage|statement|savings|forecast`: an organisation's usage and bills, read from the
billing tables (an operator's tool; clients use the HTTP usage API). Money is printed exactly."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.billing import spend
from switchyard.billing.reports import usage_report
from switchyard.billing.statements import monthly_statement
from switchyard.cli import database, tenant_arg
from switchyard.cli.errors import existing_database
from switchyard.cli.failures import database_refusal
from switchyard.common.billing_rpc import (
    GROUP_BY,
    ForecastQuery,
    SavingsQuery,
    Statement,
    StatementQuery,
    UsageQuery,
    UsageReport,
    range_problem,
    statement_csv,
    usage_csv,
)
from switchyard.common.config import CommonSettings
from switchyard.common.db import sessionmaker
from switchyard.common.policy import load_policy

T = TypeVar("T")
Sessions = async_sessionmaker[AsyncSession]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("billing", help="usage, monthly statements, savings and forecasts")
    parser.add_argument("--database-url", help="default: SWITCHYARD_DATABASE_URL (or the embedded SQLite)")
    cmds = parser.add_subparsers(dest="billing_command", required=True, metavar="ACTION")

    usage = cmds.add_parser("usage", help="usage of an organisation, filtered and grouped")
    _tenant(usage)
    _range(usage)
    usage.add_argument("--user", help="only this user id")
    usage.add_argument("--key", help="only this API key id")
    usage.add_argument("--model", help="only this model id")
    usage.add_argument("--tier", help="only this tier")
    usage.add_argument("--group-by", default="day", help=f"comma-separated: {', '.join(GROUP_BY)}")
    usage.add_argument("--csv", action="store_true", help="CSV instead of JSON")
    usage.set_defaults(func=_usage)

    statement = cmds.add_parser("statement", help="the monthly statement (reconciled with the entries)")
    _tenant(statement)
    statement.add_argument("--month", help="YYYY-MM; default: this month")
    statement.add_argument("--csv", action="store_true", help="CSV instead of JSON")
    statement.set_defaults(func=_statement)

    savings = cmds.add_parser("savings", help="paid versus always-premium routing")
    _tenant(savings)
    _range(savings)
    savings.set_defaults(func=_savings)

    forecast = cmds.add_parser("forecast", help="month-end forecast and spend anomalies")
    _tenant(forecast)
    forecast.add_argument("--as-of", type=date.fromisoformat, help="YYYY-MM-DD; default: today")
    forecast.add_argument("--window-days", type=int, default=14)
    forecast.set_defaults(func=_forecast)


def _tenant(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, help=tenant_arg.HELP)


def _range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", type=date.fromisoformat, help="YYYY-MM-DD; default: the 1st")
    parser.add_argument("--to", dest="end", type=date.fromisoformat, help="YYYY-MM-DD; default: today")


def _today() -> date:
    return datetime.now(UTC).date()


def _run(args: argparse.Namespace, work: Callable[[Sessions], Awaitable[T]]) -> T:
    async def go() -> T:
        url = existing_database(args.database_url or CommonSettings().db_url(), given=bool(args.database_url))
        engine = database.engine(url)
        try:
            return await work(sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _tenant_id(args: argparse.Namespace) -> str:
    return _run(args, lambda s: tenant_arg.tenant_id(s, str(args.tenant)))


def _guarded(fn: Callable[[argparse.Namespace], str]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            sys.stdout.write(fn(args))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            said = range_problem(first, start="--from", end="--to") or f"{where}: {first['msg']}"
            print(f"switchyard billing: {said}", file=sys.stderr)
            return 2
        except DBAPIError as exc:
            print(database_refusal(exc, "read billing's tables"), file=sys.stderr)
            return 2
        return 0

    return run


def _json(doc: BaseModel) -> str:
    return doc.model_dump_json(indent=2) + "\n"


@_guarded
def _usage(args: argparse.Namespace) -> str:
    today = _today()
    query = UsageQuery(
        tenant_id=_tenant_id(args),
        start=args.start or today.replace(day=1),
        end=args.end or today,
        user_id=args.user,
        api_key_id=args.key,
        model=args.model,
        tier=args.tier,
        group_by=[g.strip() for g in args.group_by.split(",") if g.strip()],
    )
    report: UsageReport = _run(args, lambda s: usage_report(s, query))
    return usage_csv(report) if args.csv else _json(report)


@_guarded
def _statement(args: argparse.Namespace) -> str:
    query = StatementQuery(tenant_id=_tenant_id(args), month=args.month or _today().strftime("%Y-%m"))
    doc: Statement = _run(args, lambda s: monthly_statement(s, query))
    return statement_csv(doc) if args.csv else _json(doc)


@_guarded
def _savings(args: argparse.Namespace) -> str:
    today = _today()
    query = SavingsQuery(
        tenant_id=_tenant_id(args), start=args.start or today.replace(day=1), end=args.end or today
    )
    policy = load_policy(CommonSettings().policy_path)
    return _json(_run(args, lambda s: spend.savings(s, query, policy=policy)))


@_guarded
def _forecast(args: argparse.Namespace) -> str:
    query = ForecastQuery(tenant_id=_tenant_id(args), as_of=args.as_of, window_days=args.window_days)
    return _json(_run(args, lambda s: spend.forecast(s, query)))
