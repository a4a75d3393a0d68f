"""`switchyard bus credentials DIR`: the NATS users of a deployment of one's own (docker compose,
Kubernetes), each with only its rights, as `switchyard up` runs them.

In DIR (made 0700): one random password per user (`<user>.password`: 32 random bytes, URL-safe base64;
a password already there is kept, so running it again changes nothing a service holds) and
`nats-users.conf`, nats.conf's `authorization` block with each user's permissions (bus_permissions.py)
and its password's bcrypt hash, never the password: the NATS servers hold no secret a service presents.
A kept password keeps its hash, so run again the file is the same bytes.
Each service is given its own password file alone (compose: a secret per service; Kubernetes: one key
of the secret switchyard-nats per Deployment).

The files are mode 0644 in a 0700 folder: no one else on the host can reach them, and a container whose
user is not the file's owner (the images run as uid 10001) can still read the one file mounted into it.

bcrypt's work factor is low on purpose (BCRYPT_COST): these passwords are random with 256 bits, which no
work factor makes harder or easier to guess, and nats-server checks the hash on every connection (each
health check connects).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import bcrypt

from switchyard.cli.bus_permissions import INTEGRATOR, authorization_block
from switchyard.cli.nats_users import USERS, write_private
from switchyard.common.bus_auth import read_password_file

USERS_CONF = "nats-users.conf"
BCRYPT_COST = 8  # 16 ms a check in Python's bcrypt (the 2-core Xeon VM, 2026-12-07)
READABLE = 0o644
# a user's entry in the users' file as `authorization_block` writes it: its name and its password's hash
HASHED = re.compile(r'\{user: "(?P<user>[^"]+)", password: "(?P<hash>\$2[aby]\$[^"]+)"')


def password_file(folder: Path, user: str) -> Path:
    return folder / f"{user}.password"


def write_credentials(folder: Path, *, integrator: bool = False) -> list[Path]:
    """Every user's password (kept, or made now), and `nats-users.conf` with their hashes; the files
    written, in order. An `integrator` password already in `folder` keeps that user in the block."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    users = list(USERS)
    if integrator or password_file(folder, INTEGRATOR).exists():
        users.append(INTEGRATOR)
    conf = folder / USERS_CONF
    kept = _hashes(conf)
    hashes = {}
    written = []
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
    write_private(conf, header + authorization_block(hashes, integrator=INTEGRATOR in hashes))
    conf.chmod(READABLE)
    written.append(conf)
    return written


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
