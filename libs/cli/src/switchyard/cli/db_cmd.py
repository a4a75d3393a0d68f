"""`switchyard db upgrade`: runs every service's migrations against the configured database."""

from __future__ import annotations

import argparse
import asyncio
import importlib

from switchyard.common.config import CommonSettings
from switchyard.common.db import Migrations

# The services that own tables, in dependency order.
OWNERS = ("switchyard.gateway.db", "switchyard.billing.db", "switchyard.audit.db")


def all_migrations() -> list[Migrations]:
    return [importlib.import_module(name).migrations() for name in OWNERS]


async def upgrade_all(url: str) -> list[str]:
    done = []
    for migrations in all_migrations():
        await migrations.upgrade(url)
        done.append(migrations.service)
    return done


def _upgrade(args: argparse.Namespace) -> int:
    url = args.database_url or CommonSettings().db_url()
    services = asyncio.run(upgrade_all(url))
    print(f"migrated {', '.join(services)} on {url.split('://', 1)[0]}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the database to the latest schema")
    up.add_argument("--database-url", help="default: SWITCHYARD_DATABASE_URL or SQLite under var/")
    up.set_defaults(func=_upgrade)
