"""Organisations, through the gateway's admin API with the platform operator's key.

`switchyard org create NAME --admin-email EMAIL [--plan P]`: a new organisation with its first admin user
and key (printed once); its id is the `tenant_id` its tasks on the bus carry, registered for the pipeline
before this returns (a task of an id no organisation has is refused: `unknown_tenant`).

`switchyard org plan ORG_ID PLAN`: set an organisation's plan (its users' daily budgets, caches and
guardrails), which only the operator may (`PATCH /v1/admin/organizations/{id}`); an erased organisation's
is not changed any more (409 `organization_erased`).

`switchyard org erase ORG_ID`: erase an organisation's stored content: its keys revoked, its users disabled,
its stored responses, conversations, files, batches and cached answers deleted, one audit ledger event
recording the counts. Run it again to finish an interrupted erasure: it erases what is left."""

from __future__ import annotations

import argparse
import json

from switchyard.cli.keys_cmd import admin_options, call

PLANS = ("free", "pro", "enterprise")  # the gateway's (access/roles.py), which the CLI does not import

ERASE_TIMEOUT_S = 600.0  # an organisation of many records and files: each is read and purged


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("org", help="organisations (through the admin API, as the platform operator)")
    admin_options(parser)
    cmds = parser.add_subparsers(dest="org_command", required=True, metavar="ACTION")
    create = cmds.add_parser("create", help="a new organisation with its first admin user and key")
    create.add_argument("name")
    create.add_argument("--admin-email", required=True, help="its first admin user")
    create.add_argument("--plan", choices=PLANS, default="free")
    create.set_defaults(func=_create)
    erase = cmds.add_parser(
        "erase", help="erase an organisation's stored content and revoke its keys (GDPR Art. 17)"
    )
    erase.add_argument("org_id", help="the organisation's id (GET /v1/admin/organization shows it)")
    erase.add_argument("--yes", action="store_true", help="required: the erasure cannot be undone")
    erase.set_defaults(func=_erase)
    plan = cmds.add_parser("plan", help="set an organisation's plan (free, pro, enterprise)")
    plan.add_argument("org_id", help="the organisation's id (GET /v1/admin/organization shows it)")
    plan.add_argument("plan", choices=PLANS)
    plan.set_defaults(func=_plan)


def _create(args: argparse.Namespace) -> int:
    body = {"name": args.name, "admin_email": args.admin_email, "plan": args.plan}
    made = call(args, "POST", "/v1/admin/organizations", json=body)
    print(json.dumps(made, indent=2))
    return 0


def _plan(args: argparse.Namespace) -> int:
    org = call(args, "PATCH", f"/v1/admin/organizations/{args.org_id}", json={"plan": args.plan})
    print(json.dumps(org, indent=2))
    return 0


def _erase(args: argparse.Namespace) -> int:
    if not args.yes:
        raise SystemExit(f"erasing {args.org_id} cannot be undone: add --yes")
    erased = call(args, "POST", f"/v1/admin/organizations/{args.org_id}/erase", timeout=ERASE_TIMEOUT_S)
    print(json.dumps(erased, indent=2))
    return 0
