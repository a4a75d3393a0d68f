"""The NATS users of the embedded run and their passwords, kept in the var dir.

`switchyard up` makes a random password for each user on its first run (`<var>/nats-auth/<user>.password`,
mode 0600, the folder 0700), keeps them across runs, writes them into the nats-server's configuration and
gives each service its own user and the path of its password file (never the password: it is in no
process's arguments or environment). The CLI's commands that use the bus read `operator`'s from the same
var dir, so they need no setting. Another system logs in as `integrator` (bus_permissions.py: it may only
submit, cancel and rate the tasks of the run's dev organisation and hear their results), whose password
`switchyard up` keeps there too.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from switchyard.common.bus_auth import NatsCredentials, read_password_file
from switchyard.common.bus_guard import OPERATOR

AUTH_DIR = "nats-auth"
# One user per service, and the operator's (the CLI). Processes that are part of a service connect as it.
USERS = ("gateway", "classifier", "router", "executor", "billing", "audit", OPERATOR)
PART_OF = {"classifier-outcomes": "classifier"}
# Processes that never use the bus (the SIEM exporter reads the ledger's database): given no NATS user.
BUSLESS = ("siem-exporter",)


def user_of(process: str) -> str:
    """The NATS user a process of the embedded run connects as (`classifier-outcomes`: `classifier`)."""
    return PART_OF.get(process, process)


def password_path(var_dir: Path, user: str) -> Path:
    return var_dir / AUTH_DIR / f"{user}.password"


def ensure_passwords(var_dir: Path, users: tuple[str, ...] = USERS) -> dict[str, str]:
    """Every user's password, made now for a user that has none (32 random bytes, URL-safe base64)."""
    folder = var_dir / AUTH_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    passwords = {}
    for user in users:
        path = password_path(var_dir, user)
        if not path.exists():
            write_private(path, secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)  # one copied in or made by hand with a looser mode
        passwords[user] = read_password_file(path).get_secret_value()
    return passwords


def embedded_credentials(var_dir: Path, user: str = OPERATOR) -> NatsCredentials | None:
    """`user`'s credentials for the embedded run whose data is in `var_dir` (None: it made none yet)."""
    path = password_path(var_dir, user)
    if not path.exists():
        return None
    return NatsCredentials(user=user, password=read_password_file(path))


def write_private(path: Path, text: str) -> None:
    """`text` in a file only its owner can read: a new one is created 0600 (never briefly readable by
    others), an existing one is made 0600 before it is written."""
    if path.exists():
        path.chmod(0o600)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def url_with_credentials(url: str, var_dir: Path, user: str = OPERATOR) -> str:
    """`url` (the embedded run's, `nats://127.0.0.1:<port>`) with `user`'s password in it, for tools
    that take only a URL (tests, benchmarks); `url` itself when the run made no passwords."""
    found = embedded_credentials(var_dir, user)
    if found is None:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{found.password.get_secret_value()}@{rest}"
