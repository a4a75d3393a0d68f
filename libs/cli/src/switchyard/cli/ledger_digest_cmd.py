"""`switchyard ledger digest`: a tenant's keyed digest of a prompt (or an embedding's inputs or vectors), as
its ledger entries hold it, or, with `--seq`, whether its entry holds it (exit 0 when it does, 1 when not).

The text comes from a file or standard input, never the command line (which `ps` and shell histories
show). Reads the audit database, with the tenant's key from `ledger_digest_keys`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from switchyard.audit import digest_check
from switchyard.audit.config import AuditSettings
from switchyard.audit.digests import TenantKeys
from switchyard.cli import database, tenant_arg
from switchyard.cli.errors import existing_database
from switchyard.cli.failures import database_refusal
from switchyard.common.db import sessionmaker
from switchyard.common.errors import SwitchyardError
from switchyard.common.ledger_rpc import DigestRequest


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def _content(args: argparse.Namespace) -> dict[str, Any]:
    if args.text_file is not None:
        raw = _read(args.text_file)
        text = raw.decode("utf-8")
        # A file ends with a newline the prompt did not have; --keep-newline keeps it.
        return {"text": text if args.keep_newline else text.removesuffix("\n")}
    if args.input_file is not None:
        return {"input": orjson.loads(_read(args.input_file))}
    return {"vectors_sha256": args.vectors_sha256}


async def _check(url: str, args: argparse.Namespace) -> dict[str, Any]:
    engine = database.engine(url)
    try:
        sessions = sessionmaker(engine)
        tenant = await tenant_arg.tenant_id(sessions, args.tenant)
        request = DigestRequest(tenant_id=tenant, seq=args.seq, **_content(args))
        return await digest_check.check(sessions, TenantKeys(sessions), request)
    finally:
        await engine.dispose()


def _digest(args: argparse.Namespace) -> int:
    url = existing_database(str(args.database_url or AuditSettings().db_url()), given=bool(args.database_url))
    try:
        answer = asyncio.run(_check(url, args))
    except DBAPIError as exc:
        print(database_refusal(exc, "read the ledger"), file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"switchyard ledger: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    except (SwitchyardError, OSError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        print(f"switchyard ledger: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode("utf-8") + "\n")
    return 1 if answer.get("matches") is False else 0


def register(cmds: Any) -> None:
    p = cmds.add_parser(
        "digest",
        help="a tenant's keyed digest of a prompt, or whether its entry --seq holds it (exit 1 when not)",
    )
    p.add_argument("--database-url", help="default: SWITCHYARD_DATABASE_URL or SQLite under var/")
    p.add_argument("--tenant", required=True, help=tenant_arg.HELP)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--text-file", metavar="FILE", help="the prompt's text (`-`: standard input)")
    what.add_argument("--input-file", metavar="FILE", help="an embedding's inputs, a JSON list of strings")
    what.add_argument("--vectors-sha256", metavar="HEX", help="hex SHA-256 of an embedding's f32le vectors")
    p.add_argument("--keep-newline", action="store_true", help="keep the text file's final newline")
    p.add_argument("--seq", type=int, help="check the tenant's entry of this sequence number")
    p.set_defaults(func=_digest)
