"""`switchyard tenants list|add|erase`: the tenant registry the pipeline reads, on the bus itself.

The gateway keeps the registry from its database (an organisation is registered when it is made, marked
erased when it is erased, and every organisation at each gateway start). A deployment that runs the
pipeline without the gateway (other systems publish every task) registers its tenants here; the first
`add` makes the registry kept, and from then on a task of any tenant it does not list is refused
(`unknown_tenant`). With a gateway, make organisations through it (`POST /v1/admin/organizations`).
"""

from __future__ import annotations

import argparse
import sys

import orjson
from nats.js import JetStreamContext

from switchyard.cli.bus import on_bus
from switchyard.common import kv_guard, tenants


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "tenants", help="the tenant registry the pipeline checks tasks against (bus-only deployments)"
    )
    parser.add_argument(
        "--nats-url",
        help="default: SWITCHYARD_NATS_URL, else `switchyard up`'s "
        "(nats://127.0.0.1:SWITCHYARD_NATS_PORT, 4222)",
    )
    cmds = parser.add_subparsers(dest="tenants_command", required=True, metavar="ACTION")
    listing = cmds.add_parser("list", help="the registered tenants and whether the registry is kept")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)
    add = cmds.add_parser("add", help="register a tenant id (and keep the registry from now on)")
    add.add_argument("tenant_id")
    add.add_argument("--name", default="", help="a name to show beside it")
    add.set_defaults(func=_add)
    erase = cmds.add_parser("erase", help="refuse a tenant's tasks from now on (cannot be undone)")
    erase.add_argument("tenant_id")
    erase.add_argument("--yes", action="store_true", help="required: an erased tenant stays erased")
    erase.set_defaults(func=_erase)


def _check(tenant_id: str) -> None:
    if not 1 <= len(tenant_id) <= 64:
        raise SystemExit("a tenant id is 1 to 64 characters (a task's tenant_id)")


def _list(args: argparse.Namespace) -> int:
    async def work(js: JetStreamContext) -> tuple[list[tenants.Entry], bool]:
        bucket = await tenants.registry_bucket(js)
        try:
            kept = await tenants.is_kept(bucket)
        except kv_guard.ForgedEntry as exc:  # as the services take it: refused, and said in one line
            raise SystemExit(
                f"switchyard: the registry's kept marker ({exc}) was stored by the NATS server on a "
                "client's behalf, not written by a gateway: some NATS user is forging "
                "(docs/operations/runbooks.md, SwitchyardBusMessagesRefused); the next `switchyard tenants "
                "add` or gateway sync writes it again"
            ) from None
        return await tenants.entries(bucket), kept

    found, kept = on_bus(args.nats_url, work)
    if args.json:
        rows = [{"tenant_id": e.tenant_id, "name": e.name, "status": e.status, "at": e.at} for e in found]
        print(orjson.dumps({"kept": kept, "tenants": rows}).decode())
        return 0
    print(f"registry {'kept' if kept else 'not kept: every tenant passes (SWITCHYARD_TENANT_CHECK=auto)'}")
    for entry in found:
        print(f"{entry.tenant_id}\t{entry.status}\t{entry.at}\t{entry.name}")
    return 0


def _add(args: argparse.Namespace) -> int:
    _check(args.tenant_id)

    async def work(js: JetStreamContext) -> bool:
        bucket = await tenants.registry_bucket(js)
        current = [e for e in await tenants.entries(bucket) if e.tenant_id == args.tenant_id]
        if current and current[0].status == "erased":
            raise SystemExit(f"{args.tenant_id} was erased: it stays erased")
        written = await tenants.register(bucket, args.tenant_id, name=args.name)
        await tenants.mark_kept(bucket, by="switchyard tenants add")
        return written

    written = on_bus(args.nats_url, work)
    print(f"{args.tenant_id} {'registered' if written else 'was registered already'}")
    return 0


def _erase(args: argparse.Namespace) -> int:
    _check(args.tenant_id)
    if not args.yes:
        print(f"refusing {args.tenant_id}'s tasks cannot be undone: add --yes", file=sys.stderr)
        return 2

    async def work(js: JetStreamContext) -> None:
        bucket = await tenants.registry_bucket(js)
        await tenants.erase(bucket, args.tenant_id)
        await tenants.mark_kept(bucket, by="switchyard tenants erase")

    on_bus(args.nats_url, work)
    print(f"{args.tenant_id} erased: its tasks are refused")
    return 0
