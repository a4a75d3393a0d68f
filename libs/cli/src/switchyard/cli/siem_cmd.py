"""`switchyard siem export --to URL --format FMT [--from-seq N]`: one export run, until caught up.

The long-running exporter is `python -m switchyard.audit.export` (settings `SWITCHYARD_SIEM_*`). This
command uses the same settings (TLS files, HEC token, frame size) and exits once every entry in the ledger
when it started is delivered (for syslog: written and settled; for HEC: acknowledged).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from switchyard.audit.export.config import ExportSettings
from switchyard.audit.export.destinations import destination
from switchyard.audit.export.exporter import ExportGaveUp, ExportJob, Progress, run_export
from switchyard.audit.export.formats import FORMATS
from switchyard.audit.export.sinks import SinkFatal
from switchyard.cli.errors import existing_database
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.errors import SwitchyardError

ATTEMPTS = 5  # in a row, delivering nothing (0.5 + 1 + 2 + 4 s apart), before a one-off export gives up


async def export_once(
    settings: ExportSettings,
    url: str,
    fmt: str,
    *,
    from_seq: int | None,
    name: str | None,
    max_failures: int | None = ATTEMPTS,
) -> Progress:
    encoder, open_sink = destination(url, fmt, settings)
    engine = create_engine(settings.db_url(), **settings.db_options())
    try:
        job = ExportJob(
            encoder=encoder,
            open_sink=open_sink,
            name=name,
            from_seq=from_seq,
            batch=settings.siem_batch,
            poll_s=0.1,
            max_failures=max_failures,
        )
        return await run_export(sessionmaker(engine), job, once=True)
    finally:
        await engine.dispose()


def _export(args: argparse.Namespace) -> int:
    settings = ExportSettings()
    if args.database_url:
        settings.database_url = args.database_url
    existing_database(settings.db_url(), given=bool(args.database_url))
    try:
        progress = asyncio.run(
            export_once(settings, args.to, args.format, from_seq=args.from_seq, name=args.name)
        )
    except (SwitchyardError, SinkFatal, ValueError) as exc:
        print(f"export failed: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    except ExportGaveUp as exc:
        done = f"delivered through seq {exc.position}" if exc.position else "nothing delivered"
        print(
            f"export failed: cannot deliver to {args.to} ({exc.attempts} attempts: {exc.problem}); {done}"
            + (f", position {args.name!r} saved" if args.name else ""),
            file=sys.stderr,
        )
        return 1
    if args.from_seq is not None and progress.head is not None and args.from_seq > progress.head:
        print(f"nothing to export: the ledger ends at seq {progress.head} (--from-seq {args.from_seq})")
        return 0
    print(
        f"exported through seq {progress.position} to {args.to} as {args.format}"
        + (f" (position {args.name!r} saved)" if args.name else "")
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    siem = sub.add_parser("siem", help="export the ledger to a SIEM")
    cmds = siem.add_subparsers(dest="siem_command", required=True)
    ex = cmds.add_parser("export", help="export once, until caught up with the ledger")
    ex.add_argument(
        "--to", required=True, help="tcp://host:port, tls://host:port, https://host:port, file:///path"
    )
    ex.add_argument("--format", required=True, choices=FORMATS)
    ex.add_argument(
        "--from-seq", type=int, help="start at this seq (default: after the saved position, or 1)"
    )
    ex.add_argument("--name", help="save and resume the position under this name")
    ex.add_argument("--database-url", help="default: SWITCHYARD_DATABASE_URL or SQLite under var/")
    ex.set_defaults(func=_export)
