"""`switchyard ledger ...`: verify the ledger, show checkpoints, print and check proofs, report, archive,
check a prompt against its keyed digest (`ledger_digest_cmd`).

Proofs and checkpoints are printed as JSON documents an outsider verifies with any Ed25519 library and
SHA-256 (formats in services/audit/README.md); `verify-proof` checks them offline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.audit import proofs, retention, roles
from switchyard.audit.checkpoints import make_checkpoint
from switchyard.audit.config import AuditSettings
from switchyard.audit.note import CheckpointBody, NoteError, VerifierKey, open_note, parse_verifier_key
from switchyard.audit.proof_check import CheckFailed, check_checkpoint, check_document
from switchyard.audit.report import compliance_report
from switchyard.audit.verify import Report, verify_ledger
from switchyard.cli import database, ledger_digest_cmd, tenant_arg
from switchyard.cli.errors import CommandError, existing_database
from switchyard.cli.failures import database_refusal
from switchyard.common.db import sessionmaker
from switchyard.common.errors import SwitchyardError

T = TypeVar("T")
Sessions = async_sessionmaker[AsyncSession]


def _settings() -> AuditSettings:
    return AuditSettings()


def _url(args: argparse.Namespace) -> str:
    return existing_database(str(args.database_url or _settings().db_url()), given=bool(args.database_url))


async def _with_sessions(url: str, work: Callable[[Sessions], Awaitable[T]]) -> T:
    engine = database.engine(url)
    try:
        return await work(sessionmaker(engine))
    finally:
        await engine.dispose()


def _run(args: argparse.Namespace, work: Callable[[Sessions], Awaitable[T]]) -> T:
    return asyncio.run(_with_sessions(_url(args), work))


def _print_json(doc: Any, out: str | None = None) -> None:
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    if out:
        Path(out).write_bytes(data)
    else:
        sys.stdout.write(data.decode("utf-8"))


def _trusted(args: argparse.Namespace) -> list[VerifierKey]:
    if args.verifier_key:
        return [parse_verifier_key(k) for k in args.verifier_key]
    signer = _settings().signer(create=False)
    return [signer.key] if signer is not None else []


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except DBAPIError as exc:
            print(database_refusal(exc, "read the ledger"), file=sys.stderr)
            return 2
        except (SwitchyardError, NoteError) as exc:
            print(f"switchyard ledger: {getattr(exc, 'message', exc)}", file=sys.stderr)
            return 2

    return run


async def verify_url(
    url: str, trusted: list[VerifierKey] | None = None, saved: list[CheckpointBody] | None = None
) -> Report:
    return await _with_sessions(url, lambda s: verify_ledger(s, trusted=trusted or [], saved=saved or []))


def _saved_checkpoint(path: str, trusted: list[VerifierKey]) -> CheckpointBody:
    """A checkpoint kept outside the database (its JSON document or the bare signed note), checked
    against the trusted keys: a copy that a trusted key did not sign proves nothing."""
    if not trusted:
        raise NoteError("a saved checkpoint is checked against a trusted key: pass --verifier-key")
    text = Path(path).read_text(encoding="utf-8")
    problems = []
    for key in trusted:
        try:
            if text.lstrip().startswith("{"):
                return check_checkpoint(orjson.loads(text), key)[0]
            return open_note(text, key)
        except (CheckFailed, NoteError, orjson.JSONDecodeError) as exc:
            problems.append(str(exc))
    raise NoteError(f"{path}: {'; '.join(problems)}")


@_guarded
def _verify(args: argparse.Namespace) -> int:
    trusted = _trusted(args)
    saved = [_saved_checkpoint(path, trusted) for path in args.checkpoint or []]
    report = asyncio.run(verify_url(_url(args), trusted, saved))
    keys = "trusted key" if report.keys_pinned else "keys stored with them (pin one with --verifier-key)"
    if report.problem is None:
        checkpoints = f"{report.checkpoints} checkpoint{'' if report.checkpoints == 1 else 's'}"
        summary = (
            f"{report.entries} entries, head seq {report.head_seq}, head {report.head_hash}, "
            f"root {report.root_hash}; {checkpoints} verified against the {keys}"
            + (f"; the {report.saved} checkpoints you saved match" if saved else "")
        )
        if not report.notes:
            print(f"ledger intact: {summary}")
            return 0
        # The entries verify, but what serves proofs does not: not intact, and exit 1 says so.
        print(f"ledger DAMAGED: {'; '.join(report.notes)}", file=sys.stderr)
        print(f"the entries verify ({summary})", file=sys.stderr)
        return 1
    p = report.problem
    print(f"ledger BROKEN at seq {p.seq} (event {p.event_id}): {p.reason}", file=sys.stderr)
    before = f"entries 1..{report.entries} verify intact" if report.entries else "no entry before it"
    last = f" (last good hash {report.head_hash})" if report.head_hash else ""
    print(f"{before}{last}", file=sys.stderr)
    return 1


@_guarded
def _checkpoint(args: argparse.Namespace) -> int:
    if args.sign_now:
        signer = _settings().signer(create=False)
        if signer is None:
            said = "no signing key configured (SWITCHYARD_AUDIT_SIGNING_KEY[_FILE])"
            print(f"switchyard ledger: {said}", file=sys.stderr)
            return 2
        _run(args, lambda s: make_checkpoint(s, signer=signer))
    _print_json(_run(args, lambda s: proofs.checkpoint(s, size=args.size)), args.out)
    return 0


@_guarded
def _inclusion(args: argparse.Namespace) -> int:

    async def proof(s: Sessions) -> dict[str, Any]:
        tenant = None if args.tenant is None else await tenant_arg.tenant_id(s, args.tenant)
        return await proofs.inclusion(s, seq=args.seq, tree_size=args.checkpoint, tenant_id=tenant)

    _print_json(_run(args, proof), args.out)
    return 0


@_guarded
def _consistency(args: argparse.Namespace) -> int:
    _print_json(_run(args, lambda s: proofs.consistency(s, first=args.first, second=args.second)), args.out)
    return 0


def _verify_proof(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:  # a key that is not one says nothing of the proof: the command's misuse, as an unreadable file
        trusted = parse_verifier_key(args.verifier_key[0]) if args.verifier_key else None
    except NoteError as exc:
        raise CommandError(f"--verifier-key: {exc}") from None
    try:
        if path.suffix == ".jsonl":
            return _verify_archive(path, trusted)
        result = check_document(orjson.loads(path.read_bytes()), trusted=trusted)
    except OSError as exc:  # a file that cannot be read says nothing of a proof: the command's misuse
        raise CommandError(f"{exc.filename or path}: {exc.strerror or exc}") from None
    except (CheckFailed, NoteError, orjson.JSONDecodeError) as exc:
        print(f"proof INVALID: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, AttributeError) as exc:  # an archive's header or line not of its shape
        print(f"proof INVALID: malformed archive: {exc!r}", file=sys.stderr)
        return 1
    pin = "the pinned key" if result.pinned else "the key in the file (pin it with --verifier-key)"
    print(f"proof valid: {result.summary}; signed by {result.key}, checked against {pin}")
    return 0


def _verify_archive(path: Path, trusted: VerifierKey | None) -> int:
    with open(path, "rb") as f:
        header = orjson.loads(f.readline())
        if header.get("format") != retention.ARCHIVE_FORMAT:
            raise CheckFailed("not a ledger archive")
        count = 0
        for line in f:
            doc = {
                "format": proofs.INCLUSION_FORMAT,
                **orjson.loads(line),
                "checkpoint": header["checkpoint"],
            }
            doc["tree_size"] = header["checkpoint"]["tree_size"]
            check_document(doc, trusted=trusted)
            count += 1
    if count != header["last_seq"] - header["first_seq"] + 1:
        raise CheckFailed(
            f"the archive holds {count} entries, its header says {header['first_seq']}..{header['last_seq']}"
        )
    print(
        f"archive valid: entries {header['first_seq']}..{header['last_seq']} are in checkpoint "
        f"{header['checkpoint']['tree_size']}"
    )
    return 0


def _date(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@_guarded
def _report(args: argparse.Namespace) -> int:
    if args.end <= args.start:
        raise CommandError(f"--to ({args.end.isoformat()}) must be after --from ({args.start.isoformat()})")
    trusted = _trusted(args)

    async def report(s: Sessions) -> dict[str, Any]:
        tenant = await tenant_arg.tenant_id(s, args.tenant)
        return await compliance_report(s, tenant_id=tenant, start=args.start, end=args.end, trusted=trusted)

    doc = _run(args, report)
    _print_json(doc, args.out)
    return 0 if doc["verification"]["ok"] else 1


@_guarded
def _archive(args: argparse.Namespace) -> int:
    days = args.retention_days or _settings().audit_retention_days
    done = _run(
        args,
        lambda s: retention.archive(s, before=args.before, out_dir=Path(args.out_dir), retention_days=days),
    )
    if done is None:
        print("nothing to archive")
    else:
        print(
            f"archived entries {done.first_seq}..{done.last_seq} to {done.path} (sha256 {done.sha256}), "
            f"with proofs against checkpoint {done.checkpoint_size}; the entries stay in the ledger"
        )
    return 0


@_guarded
def _app_role(args: argparse.Namespace) -> int:
    password = os.environ.get(args.password_env) if args.password_env else None
    asyncio.run(_grant(_url(args), args.role, password))
    print(f"role {args.role}: SELECT, INSERT only on the ledger tables; full use of the others")
    return 0


async def _grant(url: str, role: str, password: str | None) -> None:
    engine = database.engine(url)
    try:
        await roles.grant_app_role(engine, role=role, password=password)
    finally:
        await engine.dispose()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ledger = sub.add_parser(
        "ledger", help="the append-only audit ledger: verify, checkpoints, proofs, reports"
    )
    cmds = ledger.add_subparsers(dest="ledger_command", required=True)

    def add(name: str, help_: str, func: Callable[[argparse.Namespace], int], parent: Any = cmds) -> Any:
        p = parent.add_parser(name, help=help_)
        p.add_argument("--database-url", help="default: SWITCHYARD_DATABASE_URL or SQLite under var/")
        p.set_defaults(func=func)
        return p

    def keyed(p: Any) -> Any:
        p.add_argument("--verifier-key", action="append", help="trusted verifier key (<name>+<id>+<key>)")
        return p

    verify = keyed(
        add(
            "verify",
            "recompute every hash, link, root and checkpoint; exit 1 naming the first bad entry",
            _verify,
        )
    )
    verify.add_argument(
        "--checkpoint",
        action="append",
        metavar="FILE",
        help="a checkpoint saved earlier (JSON document or signed note): the ledger must still give its root",
    )
    cp = add("checkpoint", "print the latest (or a given) signed checkpoint as JSON", _checkpoint)
    cp.add_argument("--size", type=int, help="the checkpoint of this tree size")
    cp.add_argument("--sign-now", action="store_true", help="sign a checkpoint of the current tree first")
    cp.add_argument("--out", help="write to this file")
    proof = cmds.add_parser("proof", help="inclusion and consistency proofs as JSON")
    proof_cmds = proof.add_subparsers(dest="proof_command", required=True)
    inc = add("inclusion", "prove an entry is in a checkpoint", _inclusion, proof_cmds)
    inc.add_argument("--seq", type=int, required=True)
    inc.add_argument("--checkpoint", type=int, help="the checkpoint's tree size (default: the latest)")
    inc.add_argument("--tenant", help="refuse unless the entry belongs to this tenant (its id or name)")
    inc.add_argument("--out", help="write to this file")
    con = add("consistency", "prove a checkpoint is a prefix of a later one", _consistency, proof_cmds)
    con.add_argument("--from", dest="first", type=int, required=True)
    con.add_argument("--to", dest="second", type=int, help="default: the latest checkpoint")
    con.add_argument("--out", help="write to this file")
    vp = keyed(cmds.add_parser("verify-proof", help="check a proof, checkpoint or archive file offline"))
    vp.add_argument("file")
    vp.set_defaults(func=_verify_proof)
    rep = keyed(add("report", "compliance report of a tenant and period (JSON)", _report))
    rep.add_argument("--tenant", required=True, help=tenant_arg.HELP)
    rep.add_argument("--from", dest="start", type=_date, required=True, help="ISO date or time (UTC)")
    rep.add_argument("--to", dest="end", type=_date, required=True, help="exclusive")
    rep.add_argument("--out", help="write to this file")
    arc = add(
        "archive", "export entries older than the retention period, with proofs (never deletes)", _archive
    )
    arc.add_argument("--before", type=_date, required=True, help="archive entries recorded before this")
    arc.add_argument("--out-dir", required=True)
    arc.add_argument("--retention-days", type=int, help="default: SWITCHYARD_AUDIT_RETENTION_DAYS (>= 90)")
    role = add(
        "app-role",
        "PostgreSQL: create/grant the services' role without UPDATE/DELETE on the ledger",
        _app_role,
    )
    role.add_argument("--role", required=True)
    role.add_argument("--password-env", help="environment variable holding the role's password")
    ledger_digest_cmd.register(cmds)
