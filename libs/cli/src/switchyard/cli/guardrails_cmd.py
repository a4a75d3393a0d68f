"""`switchyard guardrails check`: the guardrail file read as the gateway reads it at start (exit 2 and the
field when it is invalid), and its tenant ids checked against the organisations (exit 1 naming each one no
organisation has, with the organisation whose name it is): the gateway only warns of those."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from switchyard.common.config import CommonSettings
from switchyard.common.errors import ConfigurationError


async def _unknown(url: str, ids: list[str]) -> dict[str, str | None]:
    from switchyard.cli import database
    from switchyard.common.db import sessionmaker
    from switchyard.gateway.guardrails.tenants import unknown_tenants

    engine = database.engine(url)
    try:
        return await unknown_tenants(sessionmaker(engine), ids)
    finally:
        await engine.dispose()


def _check(args: argparse.Namespace) -> int:
    from switchyard.gateway.config import GatewaySettings
    from switchyard.gateway.guardrails.chain import load_file
    from switchyard.gateway.guardrails.tenants import describe

    path: Path | None = args.file or GatewaySettings().guardrails_path
    if path is None:
        print("no guardrail file: give --file or set SWITCHYARD_GUARDRAILS_PATH", file=sys.stderr)
        return 2
    try:
        file = load_file(path)
    except ConfigurationError as exc:
        print(f"switchyard guardrails check: {exc}", file=sys.stderr)
        return 2
    url = args.database_url or CommonSettings().db_url()
    unknown = asyncio.run(_unknown(url, list(file.tenants)))
    for tenant, named in unknown.items():
        print(f"{path}: tenants: {describe(tenant, named)}")
    if unknown:
        return 1
    print(f"{path}: valid; {len(file.plans)} plan(s), {len(file.tenants)} tenant(s), every tenant id known")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("guardrails", help="check the guardrail file")
    cmds = parser.add_subparsers(dest="guardrails_command", required=True, metavar="ACTION")
    check = cmds.add_parser(
        "check",
        help="read the guardrail file as the gateway does, and check its tenant ids (exit 1: unknown)",
    )
    check.add_argument("--file", type=Path, help="default: SWITCHYARD_GUARDRAILS_PATH")
    check.add_argument("--database-url", help="default: SWITCHYARD_DATABASE_URL or SQLite under var/")
    check.set_defaults(func=_check)
