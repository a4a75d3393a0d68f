"""`switchyard ledger verify`: recomputes every hash and link of the ledger and names the first bad entry."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy.exc import DBAPIError
from switchyard.audit.verify import Report, verify_ledger
from switchyard.common.config import CommonSettings
from switchyard.common.db import create_engine, sessionmaker


async def verify_url(url: str) -> Report:
    engine = create_engine(url)
    try:
        return await verify_ledger(sessionmaker(engine))
    finally:
        await engine.dispose()


def _verify(args: argparse.Namespace) -> int:
    url = args.database_url or CommonSettings().db_url()
    try:
        report = asyncio.run(verify_url(url))
    except DBAPIError as exc:
        print(f"cannot read the ledger ({exc.orig}); has `switchyard db upgrade` run?", file=sys.stderr)
        return 2
    if report.problem is None:
        print(f"ledger intact: {report.entries} entries, head seq {report.head_seq}, head {report.head_hash}")
        return 0
    p = report.problem
    print(f"ledger BROKEN at seq {p.seq} (event {p.event_id}): {p.reason}", file=sys.stderr)
    before = f"entries 1..{report.entries} verify intact" if report.entries else "no entry before it"
    print(f"{before} (last good hash {report.head_hash})", file=sys.stderr)
    return 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ledger = sub.add_parser("ledger", help="the append-only audit ledger")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = ledger_sub.add_parser(
        "verify", help="recompute every hash and link; exit 1 naming the first bad entry"
    )
    verify.add_argument("--database-url", help="default: SWITCHYARD_DATABASE_URL or SQLite under var/")
    verify.set_defaults(func=_verify)
