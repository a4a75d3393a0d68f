"""`switchyard keys list|create|show|update|rotate|revoke`: an organisation's API keys through the
gateway's admin API, so every change is authorised, scoped to the caller's organisation, recorded for the
audit ledger and applied on every replica at once, exactly as over HTTP. The plaintext of a new key (a
rotated one's successor too) is printed once; a key's policy (models, limits, budget) is set at creation
and changed by `update`."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx

from switchyard.cli.devstack import StackSettings
from switchyard.cli.errors import CommandError

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("keys", help="list, create and revoke API keys (through the admin API)")
    admin_options(parser)
    cmds = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    listing = cmds.add_parser("list", help="the organisation's keys (never the keys themselves)")
    listing.add_argument("--user", help="only this user's keys")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(func=_list)

    create = cmds.add_parser("create", help="create a key; it is printed once")
    create.add_argument("--name", required=True)
    create.add_argument("--user", help="the user it acts as; default: the caller")
    create.add_argument("--scopes", help="space- or comma-separated; default: all the user's role allows")
    create.add_argument("--expires-in", help="e.g. 3600, 90m, 12h, 30d; default: never")
    _policy_arguments(create, clear="")
    create.add_argument("--json", action="store_true", help="the whole response as JSON")
    create.set_defaults(func=_create)

    show = cmds.add_parser("show", help="one key's metadata, policy and spend (JSON)")
    show.add_argument("key_id")
    show.set_defaults(func=_show)

    update = cmds.add_parser("update", help="change a key's models, limits or budget (`none` removes one)")
    update.add_argument("key_id")
    _policy_arguments(update, clear="; none: remove it")
    update.set_defaults(func=_update)

    rotate = cmds.add_parser(
        "rotate", help="a new key with the same user, scopes and policy (printed once); the old one ends"
    )
    rotate.add_argument("key_id")
    rotate.add_argument(
        "--grace-s",
        type=float,
        default=0,
        metavar="N",
        help="seconds the old key keeps working (at most 7 days); default 0: revoked now",
    )
    rotate.add_argument("--json", action="store_true", help="the whole response as JSON")
    rotate.set_defaults(func=_rotate)

    revoke = cmds.add_parser("revoke", help="revoke a key by id (everywhere, at once)")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=_revoke)


def admin_options(parser: argparse.ArgumentParser) -> None:
    """--url and the admin's key (--api-key-file, --api-key): the gateway and the key `call` uses."""
    parser.add_argument(
        "--url",
        help="the gateway; default: SWITCHYARD_GATEWAY_URL, else `switchyard up`'s "
        "(http://127.0.0.1:SWITCHYARD_HTTP_PORT, 8080)",
    )
    parser.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="a file holding an admin's key (its first line); default: SWITCHYARD_API_KEY_FILE, else the "
        "key in SWITCHYARD_API_KEY, else the file dev-api-key in SWITCHYARD_VAR_DIR (var)",
    )
    parser.add_argument(
        "--api-key",
        help="an admin's key on the command line, where every user of the machine sees it (ps, "
        "/proc/PID/cmdline): prefer SWITCHYARD_API_KEY or --api-key-file (SWITCHYARD_API_KEY_FILE)",
    )


def _policy_arguments(parser: argparse.ArgumentParser, *, clear: str) -> None:
    parser.add_argument(
        "--models", help=f"the models it may use, comma-separated (auto: it may route){clear}"
    )
    parser.add_argument("--rpm", help=f"its requests per minute{clear}")
    parser.add_argument("--tpm", help=f"its tokens per minute{clear}")
    parser.add_argument("--budget", help=f"its budget in USD per --budget-duration{clear}")
    parser.add_argument(
        "--budget-duration",
        choices=("1d", "1mo", "none"),
        help="the UTC day or the calendar month; none (or left out at creation): the budget is in all, "
        "for the key's lifetime",
    )


def policy_body(args: argparse.Namespace) -> dict[str, Any]:
    """The policy fields given on the command line (`none`: null, to remove one)."""
    given = {
        "models": args.models,
        "rpm_limit": args.rpm,
        "tpm_limit": args.tpm,
        "max_budget_usd": args.budget,
        "budget_duration": args.budget_duration,
    }
    body: dict[str, Any] = {}
    for name, text in given.items():
        if text is None:
            continue
        if text == "none":
            body[name] = None
        elif name == "models":
            body[name] = [m for m in text.replace(",", " ").split() if m]
        elif name in ("rpm_limit", "tpm_limit"):
            body[name] = _number(text, int, name)
        elif name == "max_budget_usd":
            body[name] = _number(text, float, name)
        else:
            body[name] = text
    return body


def _number(text: str, kind: type[int] | type[float], name: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise SystemExit(f"{name}: not a number: {text!r}") from None


def duration_s(text: str) -> int:
    m = _DURATION.match(text.strip())
    if m is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 3600, 90m, 12h, 30d)")
    return int(m.group(1)) * _SECONDS[m.group(2)]


def _credential(args: argparse.Namespace) -> str:
    """The admin's key: --api-key (warned about: `ps` shows it), --api-key-file, SWITCHYARD_API_KEY_FILE,
    SWITCHYARD_API_KEY, then `switchyard up`'s dev-api-key."""
    if args.api_key:
        print(
            "warning: --api-key shows the key to every user of this machine (ps, /proc/PID/cmdline); "
            "set SWITCHYARD_API_KEY or use --api-key-file (SWITCHYARD_API_KEY_FILE) instead",
            file=sys.stderr,
        )
        return str(args.api_key)
    named = args.api_key_file or os.environ.get("SWITCHYARD_API_KEY_FILE")
    if named:
        return _read_key(Path(named))
    key = os.environ.get("SWITCHYARD_API_KEY")
    if key:
        return key.strip()
    path = Path(os.environ.get("SWITCHYARD_VAR_DIR", "var")) / "dev-api-key"
    if path.exists():
        return _read_key(path)
    raise SystemExit(
        "no API key: set SWITCHYARD_API_KEY, pass --api-key-file (or set SWITCHYARD_API_KEY_FILE), "
        "or run `switchyard up` first"
    )


def _read_key(path: Path) -> str:
    """The first line of the file (never echoed: an error names the file, not what it holds)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"cannot read the API key file {path}: {exc.__class__.__name__}") from None
    key = lines[0].strip() if lines else ""
    if not key:
        raise SystemExit(f"the API key file {path} is empty")
    return key


def call(args: argparse.Namespace, method: str, path: str, *, timeout: float = 30.0, **kwargs: Any) -> Any:
    """The admin API's answer to the request (its JSON); exits with the error's code and message (exit 2 for
    a 400, which refused what the command was given; 1 for any other)."""
    base = (args.url or os.environ.get("SWITCHYARD_GATEWAY_URL") or StackSettings().gateway_url()).rstrip("/")
    headers = {"authorization": f"Bearer {_credential(args)}"}
    try:
        response = httpx.request(method, f"{base}{path}", headers=headers, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        raise SystemExit(f"cannot reach the gateway at {base}: {exc}") from None
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            detail = f"{error['code']}: {error['message']} (request {error.get('request_id')})"
        except (ValueError, KeyError, TypeError):
            detail = response.text[:300]
        said = f"{method} {path} failed with {response.status_code}: {detail}"
        if response.status_code == 400:  # the command's input refused (a typo in --models): its misuse
            raise CommandError(said)
        raise SystemExit(said)
    return response.json()


def _list(args: argparse.Namespace) -> int:
    keys = call(args, "GET", "/v1/admin/keys", params={"user_id": args.user} if args.user else None)
    if args.json:
        print(json.dumps(keys, indent=2))
        return 0
    columns = ("id", "prefix", "name", "user_id", "scopes", "expires_at", "revoked_at")
    rows = [[" ".join(k["scopes"]) if c == "scopes" else str(k.get(c) or "-") for c in columns] for k in keys]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    for row in [list(columns), *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name}
    if args.user:
        body["user_id"] = args.user
    if args.scopes:
        body["scopes"] = args.scopes.replace(",", " ").split()
    if args.expires_in:
        try:
            body["expires_in_s"] = duration_s(args.expires_in)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    body.update(policy_body(args))
    return _print_created(args, call(args, "POST", "/v1/admin/keys", json=body))


def _print_created(args: argparse.Namespace, created: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(created, indent=2))
    else:
        print(created["key"])
        print(
            f"id {created['id']}, prefix {created['prefix']}, scopes {' '.join(created['scopes'])}; "
            "the key is shown only this once",
            file=sys.stderr,
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    print(json.dumps(call(args, "GET", f"/v1/admin/keys/{args.key_id}"), indent=2))
    return 0


def _update(args: argparse.Namespace) -> int:
    body = policy_body(args)
    if not body:
        raise SystemExit("nothing to change: give --models, --rpm, --tpm, --budget or --budget-duration")
    print(json.dumps(call(args, "PATCH", f"/v1/admin/keys/{args.key_id}", json=body), indent=2))
    return 0


def _rotate(args: argparse.Namespace) -> int:
    rotated = call(args, "POST", f"/v1/admin/keys/{args.key_id}/rotate", json={"grace_s": args.grace_s})
    return _print_created(args, rotated)


def _revoke(args: argparse.Namespace) -> int:
    revoked = call(args, "DELETE", f"/v1/admin/keys/{args.key_id}")
    print(f"revoked {revoked['id']} (prefix {revoked['prefix']}) at {revoked['revoked_at']}")
    return 0
