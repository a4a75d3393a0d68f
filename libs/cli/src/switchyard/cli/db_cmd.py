"""`switchyard db upgrade`: runs every service's migrations against the configured database.
`switchyard db downgrade`, `db current`: one service's schema back, each one's revision (`db_downgrade.py`).
`switchyard db bootstrap`: a deployment's first admin key (the platform's organisation), once."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys

from sqlalchemy.exc import DBAPIError

from switchyard.cli import db_downgrade
from switchyard.cli.errors import existing_database
from switchyard.cli.failures import database_refusal
from switchyard.common.config import CommonSettings
from switchyard.common.db import Migrations

# The services that own tables, in dependency order (the classifier's: its opt-in outcome store).
OWNERS = ("switchyard.gateway.db", "switchyard.billing.db", "switchyard.audit.db", "switchyard.classifier.db")


def all_migrations() -> list[Migrations]:
    return [importlib.import_module(name).migrations() for name in OWNERS]


async def upgrade_all(url: str, *, pgbouncer: bool = False) -> list[str]:
    done = []
    for migrations in all_migrations():
        await migrations.upgrade(url, pgbouncer=pgbouncer)
        done.append(migrations.service)
    return done


def _upgrade(args: argparse.Namespace) -> int:
    url = args.database_url or CommonSettings().db_url()
    from switchyard.cli import database

    services = asyncio.run(upgrade_all(url, pgbouncer=database.pgbouncer()))
    print(f"migrated {', '.join(services)} on {url.split('://', 1)[0]}")
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    url = existing_database(args.database_url or CommonSettings().db_url(), given=bool(args.database_url))
    migrations = db_downgrade.service_migrations(all_migrations(), args.service)
    return db_downgrade.downgrade(url, migrations, target=args.to, yes=args.yes, drop_data=args.drop_data)


def _current(args: argparse.Namespace) -> int:
    url = existing_database(args.database_url or CommonSettings().db_url(), given=bool(args.database_url))
    return db_downgrade.current(url, all_migrations())


async def _bootstrap_platform(url: str, *, name: str, email: str) -> str:
    from switchyard.cli import database
    from switchyard.common.db import sessionmaker
    from switchyard.gateway.tenants import bootstrap_platform

    engine = database.engine(url)
    try:
        tenant, plaintext = await bootstrap_platform(sessionmaker(engine), name=name, email=email)
    finally:
        await engine.dispose()
    print(f"created the platform organisation {tenant.name!r} ({tenant.id}) and its admin {email}")
    print("its admin key, shown this once (keep it in your secret store; more: switchyard keys create):")
    return plaintext


def _bootstrap(args: argparse.Namespace) -> int:
    from switchyard.gateway.tenants import PlatformExists

    url = args.database_url or CommonSettings().db_url()
    try:
        print(asyncio.run(_bootstrap_platform(url, name=args.org, email=args.email)))
    except DBAPIError as exc:
        print(database_refusal(exc, "make the platform organisation"), file=sys.stderr)
        return 2
    except PlatformExists as exc:
        print(
            f"the platform organisation {exc} exists: nothing created. Its admins make keys with "
            "`switchyard keys create`",
            file=sys.stderr,
        )
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate the database to the latest schema")
    up.add_argument("--database-url", help="default: SWITCHYARD_DATABASE_URL or SQLite under var/")
    up.set_defaults(func=_upgrade)
    down = db_sub.add_parser(
        "downgrade", help="one service's schema back to a revision: shown, done only with --yes"
    )
    down.add_argument("--service", required=True, help="gateway, billing, audit or classifier")
    down.add_argument("--to", required=True, metavar="REVISION", help="e.g. au0004; `base`: before the first")
    down.add_argument("--yes", action="store_true", help="do it (without: show the steps, change nothing)")
    down.add_argument(
        "--drop-data",
        action="store_true",
        help="let it drop tables that hold rows (the audit ledger's entries, checkpoints, digest keys) "
        "and columns that hold data (a key's policy, a charge's cache counts)",
    )
    down.add_argument("--database-url", help="default: SWITCHYARD_DATABASE_URL or SQLite under var/")
    down.set_defaults(func=_downgrade)
    now = db_sub.add_parser("current", help="each service's schema revision and its head")
    now.add_argument("--database-url", help="default: SWITCHYARD_DATABASE_URL or SQLite under var/")
    now.set_defaults(func=_current)
    boot = db_sub.add_parser(
        "bootstrap",
        help="a deployment's first admin key: the platform's organisation, its admin and a key (once)",
    )
    boot.add_argument("--org", required=True, help="the platform organisation's name")
    boot.add_argument("--email", required=True, help="its first admin's email")
    boot.add_argument("--database-url", help="default: SWITCHYARD_DATABASE_URL or SQLite under var/")
    boot.set_defaults(func=_bootstrap)
