"""`switchyard bus credentials DIR`: the NATS users of a deployment of one's own (docker compose,
Kubernetes), each with only its rights, as `switchyard up` runs them.

In DIR (made 0700): one random password per user (`<user>.password`: 32 random bytes, URL-safe base64;
a password already there is kept, so running it again changes nothing a service holds) and
`nats-users.conf`, nats.conf's `authorization` block with each user's permissions (bus_permissions.py)
and its password's bcrypt hash, never the password: the NATS servers hold no secret a service presents.
A kept password keeps its hash, so run again the file is the same bytes.
Another system's user (`--integrator NAME`) is scoped to the organisations given (`--tenant`, kept in
`<NAME>.tenants.json`, so a run without the flag keeps it as it was), or to every one only when asked
(`--all-tenants`); an `integrator.password` made before scoped users, with no such file, keeps the
all-tenant rights it had until it is given tenants.
Each service is given its own password file alone (compose: a secret per service; Kubernetes: one key
of the secret switchyard-nats per Deployment). Beside them, `event-id.secret` (made once, kept): the
secret every service keys its derived event ids with (SWITCHYARD_EVENT_ID_SECRET_FILE,
common/event_id_key.py), given to every service and to no integrator.

The files are mode 0644 in a 0700 folder: no one else on the host can reach them, and a container whose
user is not the file's owner (the images run as uid 10001) can still read the one file mounted into it.

bcrypt's work factor is low on purpose (BCRYPT_COST): these passwords are random with 256 bits, which no
work factor makes harder or easier to guess, and nats-server checks the hash on every connection (each
health check connects).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

import bcrypt

from switchyard.cli.bus_permissions import GRANTS, INTEGRATOR, Integrator, authorization_block
from switchyard.cli.nats_users import USERS, write_private
from switchyard.common.bus_auth import read_password_file

USERS_CONF = "nats-users.conf"
EVENT_ID_SECRET = "event-id.secret"  # every service's, no bus user's (SWITCHYARD_EVENT_ID_SECRET_FILE)
BCRYPT_COST = 8  # 16 ms a check in Python's bcrypt (the 2-core Xeon VM, 2026-12-07)
READABLE = 0o644
# another system's user name: its inbox prefix (`_INBOX_<name>`) and its files' names are made of it
INTEGRATOR_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# a user's entry in the users' file as `authorization_block` writes it: its name and its password's hash
HASHED = re.compile(r'\{user: "(?P<user>[^"]+)", password: "(?P<hash>\$2[aby]\$[^"]+)"')


def password_file(folder: Path, user: str) -> Path:
    return folder / f"{user}.password"


def scope_file(folder: Path, user: str) -> Path:
    return folder / f"{user}.tenants.json"


def check_integrator(name: str) -> str:
    """`name` as another system's user may be called (ValueError: it may not)."""
    if not INTEGRATOR_NAME.fullmatch(name) or name in (*USERS, *GRANTS):
        raise ValueError(
            f"{name!r} cannot name an integrator: 1-32 of a-z, 0-9, '_' and '-', and no service's user"
        )
    return name


def write_credentials(folder: Path, *, integrators: Sequence[Integrator] = ()) -> list[Path]:
    """Every user's password (kept, or made now), and `nats-users.conf` with their hashes; the files
    written, in order. The `integrators` given are (re)scoped; those already in `folder` stay as kept."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    scoped = {i.user: i for i in _kept_integrators(folder)}
    written = []
    for integrator in integrators:
        check_integrator(integrator.user)
        scoped[integrator.user] = integrator
        path = scope_file(folder, integrator.user)
        tenants = None if integrator.tenants is None else list(integrator.tenants)
        write_private(path, json.dumps({"tenants": tenants}) + "\n")
        path.chmod(READABLE)
        written.append(path)
    secret = folder / EVENT_ID_SECRET
    if not secret.exists():
        write_private(secret, secrets.token_urlsafe(32) + "\n")
    secret.chmod(READABLE)
    written.append(secret)
    users = [*USERS, *scoped]
    conf = folder / USERS_CONF
    kept = _hashes(conf)
    hashes = {}
    for user in users:
        path = password_file(folder, user)
        if not path.exists():
            write_private(path, secrets.token_urlsafe(32) + "\n")
        path.chmod(READABLE)
        password = read_password_file(path, setting=str(path)).get_secret_value()
        hashes[user] = _hash(password, kept.get(user))
        written.append(path)
    header = (
        "# Switchyard's NATS users (`switchyard bus credentials`): each service's rights, bcrypt hashes of\n"
        "# their passwords. Include it from nats.conf (`include ./nats-users.conf`).\n"
    )
    write_private(conf, header + authorization_block(hashes, integrators=tuple(scoped.values())))
    conf.chmod(READABLE)
    written.append(conf)
    return written


def _kept_integrators(folder: Path) -> list[Integrator]:
    """The integrators made before in `folder`: each password with a scope file, and `integrator`'s
    without one (made before scoped users: every tenant, as it had)."""
    kept = []
    for path in sorted(folder.glob("*.tenants.json")):
        user = path.name.removesuffix(".tenants.json")
        if not password_file(folder, user).exists():
            continue
        tenants = json.loads(path.read_text()).get("tenants")
        kept.append(Integrator(user, None if tenants is None else tuple(str(t) for t in tenants)))
    if password_file(folder, INTEGRATOR).exists() and INTEGRATOR not in {i.user for i in kept}:
        kept.append(Integrator(INTEGRATOR, None))
    return kept


def _hashes(conf: Path) -> dict[str, str]:
    """The hashes a users' file written before holds, per user (none when there is no such file)."""
    try:
        text = conf.read_text()
    except FileNotFoundError:
        return {}
    return {match["user"]: match["hash"] for match in HASHED.finditer(text)}


def _hash(password: str, kept: str | None) -> str:
    """`kept` when it is still the password's hash: run again, the users' file is the same bytes, so a
    NATS server, its secret and a config reloader see a change only when a password or a right changes."""
    if kept is not None and bcrypt.checkpw(password.encode(), kept.encode()):
        return kept
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST, prefix=b"2a")).decode()
