"""`switchyard bus provision`: every stream, KV bucket and object store made as whoever runs it, from the
one list `switchyard up` makes them from (bus_stores.py), with this environment's settings.
`switchyard bus permissions`: the nats.conf authorization block `switchyard up` runs its bus with (one user
per service, least privilege: bus_permissions.py), for a bus of your own.
`switchyard bus credentials DIR`: a password per user and that block with their hashes, for docker compose
and Kubernetes (bus_credentials.py).
Both take `--integrator NAME` with `--tenant T` (repeated) or `--all-tenants`: another system's user, scoped
to those organisations (bus_permissions.integrator_permissions)."""

from __future__ import annotations

import argparse
from pathlib import Path

from switchyard.cli import bus_credentials, bus_permissions, bus_stores
from switchyard.cli.bus import on_bus
from switchyard.cli.bus_permissions import Integrator
from switchyard.cli.devstack import StackSettings, embedded_sizes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("bus", help="the bus's streams and buckets")
    parser.add_argument(
        "--nats-url",
        help="default: SWITCHYARD_NATS_URL, else `switchyard up`'s (as its operator)",
    )
    cmds = parser.add_subparsers(dest="bus_command", required=True, metavar="ACTION")
    provision = cmds.add_parser(
        "provision",
        help="create every stream and bucket, or bring them to this environment's settings (for services "
        "that run with SWITCHYARD_BUS_PROVISIONED=true and may only open them)",
    )
    provision.set_defaults(func=_provision)
    permissions = cmds.add_parser(
        "permissions",
        help="print nats.conf's authorization block: one user per service with only its rights, and "
        "`operator` with all (passwords from <USER>_NATS_PASSWORD in the server's environment)",
    )
    _integrator_options(permissions)
    permissions.set_defaults(func=_permissions)
    creds = cmds.add_parser(
        "credentials",
        help="write a password per user (kept when there) and nats-users.conf, the authorization block with "
        "their bcrypt hashes, into DIR: the bus of docker compose and Kubernetes (docs/operations/deploy.md)",
    )
    creds.add_argument("dir", type=Path, metavar="DIR")
    _integrator_options(creds)
    creds.set_defaults(func=_credentials)


def _integrator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--integrator",
        metavar="NAME",
        help="and a NATS user NAME for another system on the bus: it may submit, cancel and rate the tasks "
        "of the --tenant organisations and hear their results and chunks, nothing else",
    )
    parser.add_argument(
        "--tenant",
        action="append",
        default=[],
        metavar="TENANT",
        help="an organisation's id the integrator acts for (repeat for several)",
    )
    parser.add_argument(
        "--all-tenants",
        action="store_true",
        help="the integrator acts for any organisation it names and hears every one's results",
    )


def _integrators(args: argparse.Namespace) -> tuple[Integrator, ...]:
    if args.integrator is None:
        if args.tenant or args.all_tenants:
            raise SystemExit("--tenant and --all-tenants scope an --integrator NAME")
        return ()
    if bool(args.tenant) == bool(args.all_tenants):
        raise SystemExit("--integrator takes --tenant T (repeated) or --all-tenants, one of them")
    try:
        name = bus_credentials.check_integrator(args.integrator)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    return (Integrator(name, None if args.all_tenants else tuple(dict.fromkeys(args.tenant))),)


def _provision(args: argparse.Namespace) -> int:
    if not args.nats_url and not StackSettings().nats_url:
        embedded_sizes()  # `switchyard up`'s bus: the sizes its services run with
    for name in on_bus(args.nats_url, bus_stores.provision):
        print(name)
    return 0


def _permissions(args: argparse.Namespace) -> int:
    print(bus_permissions.authorization_block(integrators=_integrators(args)), end="")
    return 0


def _credentials(args: argparse.Namespace) -> int:
    for path in bus_credentials.write_credentials(args.dir, integrators=_integrators(args)):
        print(path)
    return 0
