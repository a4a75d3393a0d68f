"""The credentials a process presents to NATS, and a refusal of them as one line.

The bus requires a user and password wherever Switchyard starts it (`switchyard up`, docker compose,
Kubernetes: README, "The bus contract": Trust). They come from SWITCHYARD_NATS_USER with
SWITCHYARD_NATS_PASSWORD or SWITCHYARD_NATS_PASSWORD_FILE (what `switchyard up` gives each service: a
file, so the password is in no process's arguments or environment), or from SWITCHYARD_NATS_URL's
`user:password@` (redacted wherever the URL is written).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from switchyard.common.errors import ConfigurationError

if TYPE_CHECKING:
    from faststream.nats.security import NatsUserPassword

AUTHORIZATION_VIOLATION = "authorization violation"
INBOX_PREFIX = "_INBOX"


@dataclass(frozen=True)
class NatsCredentials:
    user: str
    password: SecretStr

    @property
    def inbox_prefix(self) -> str:
        """This user's own inbox prefix (`_INBOX_<user>`): where the replies to its requests (JetStream's
        acks and answers, RPCs) come, so a bus that lets each user subscribe to its own inboxes alone
        (`switchyard up`'s) keeps everyone else's replies from it."""
        return f"{INBOX_PREFIX}_{self.user}"

    def connect_options(self) -> dict[str, str]:
        """nats-py's (and FastStream's) `user=`, `password=` and `inbox_prefix=`."""
        return {
            "user": self.user,
            "password": self.password.get_secret_value(),
            "inbox_prefix": self.inbox_prefix,
        }

    def faststream_security(self) -> NatsUserPassword:
        from faststream.nats.security import NatsUserPassword

        return NatsUserPassword(self.user, self.password.get_secret_value())


def read_password_file(path: Path, *, setting: str = "SWITCHYARD_NATS_PASSWORD_FILE") -> SecretStr:
    """The password in `path` (one line; surrounding white space is not part of it)."""
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"{setting}={str(path)!r}: cannot read it: {exc.strerror}") from exc
    if not password:
        raise ConfigurationError(f"{setting}={str(path)!r}: the file is empty")
    return SecretStr(password)


def credentials(
    *, user: str, password: SecretStr | None, password_file: Path | None
) -> NatsCredentials | None:
    """The user and password set (None: none, SWITCHYARD_NATS_URL's own if it carries them). A password
    without its user, or a user without a password, is a ConfigurationError: the service cannot start."""
    if password is not None and password_file is not None:
        raise ConfigurationError(
            "SWITCHYARD_NATS_PASSWORD and SWITCHYARD_NATS_PASSWORD_FILE are both set: set one of them"
        )
    if password_file is not None:
        password = read_password_file(password_file)
    if password is not None and not password.get_secret_value():
        password = None
    if not user and password is None:
        return None
    if not user:
        raise ConfigurationError("a NATS password is set but SWITCHYARD_NATS_USER is not: set both")
    if password is None:
        raise ConfigurationError(
            f"SWITCHYARD_NATS_USER={user!r} has no password: set SWITCHYARD_NATS_PASSWORD or "
            "SWITCHYARD_NATS_PASSWORD_FILE"
        )
    return NatsCredentials(user=user, password=password)


class BusRefused(ConfigurationError):
    """NATS refused this process's credentials (none given, an unknown user, a wrong password)."""


def refused(url: str, who: NatsCredentials | None) -> BusRefused:
    from switchyard.common.logs import redact  # the URL may carry a password

    if who is not None:
        said = f"user {who.user!r}: wrong password, or a user this server does not know"
    elif "@" in url.split("//", 1)[-1]:
        said = "the user and password in SWITCHYARD_NATS_URL"
    else:
        said = "no credentials given: set SWITCHYARD_NATS_USER and SWITCHYARD_NATS_PASSWORD(_FILE)"
    return BusRefused(redact(f"NATS at {url} refused the connection (Authorization Violation): {said}"))


def is_authorization_violation(exc: BaseException) -> bool:
    import nats.errors

    if isinstance(exc, nats.errors.AuthorizationError):
        return True
    return AUTHORIZATION_VIOLATION in str(exc).lower()


def refusing_error_cb(url: str, who: NatsCredentials | None) -> Callable[[Exception], Awaitable[None]]:
    """An `error_cb` that turns the server's refusal of the credentials into BusRefused. nats-py awaits it
    inside `connect`'s attempts, so the refusal ends `connect` (FastStream ends it there too, with nats-py's
    bare error): a service with wrong credentials stops in one line instead of a traceback."""

    async def on_error(exc: Exception) -> None:
        if is_authorization_violation(exc):
            raise refused(url, who) from exc

    return on_error
