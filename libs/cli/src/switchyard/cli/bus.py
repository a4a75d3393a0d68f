"""The CLI's commands that act on the bus (dead letters, the tenant registry, the classifier's heads):
one short-lived NATS connection per command, its failure one line naming the URL (its password
redacted), not nats-py's traceback per attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
from nats.js import JetStreamContext

from switchyard.cli import nats_users
from switchyard.cli.devstack import StackSettings
from switchyard.common.bus_auth import NatsCredentials, is_authorization_violation, refused
from switchyard.common.config import CommonSettings
from switchyard.common.errors import ConfigurationError
from switchyard.common.logs import redact

T = TypeVar("T")


def bus_target(url: str | None) -> tuple[str, NatsCredentials | None]:
    """The bus a command uses and who it connects as: `url`, else SWITCHYARD_NATS_URL, with
    SWITCHYARD_NATS_USER and its password if set; else the embedded run's (`switchyard up` with the same
    SWITCHYARD_VAR_DIR), as its `operator` user. The embedded run's password goes to no other URL."""
    stack = StackSettings()
    try:
        who = CommonSettings().nats_credentials()
        if url or stack.nats_url:
            return url or stack.bus_url(), who
        return stack.bus_url(), who or nats_users.embedded_credentials(stack.var_dir.expanduser().resolve())
    except ConfigurationError as exc:
        raise SystemExit(f"switchyard: {exc.message}") from None


def on_bus(url: str | None, work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """`work` on JetStream at `url` (default: the running stack's, `SWITCHYARD_NATS_URL`), its result."""
    url, who = bus_target(url)

    async def quiet(exc: Exception) -> None:  # nats-py's default prints each failed attempt's traceback
        pass

    async def go() -> T:
        try:
            nc = await nats.connect(
                url,
                connect_timeout=5,
                max_reconnect_attempts=1,
                allow_reconnect=False,
                error_cb=quiet,
                **(who.connect_options() if who is not None else {}),
            )
        except (OSError, nats.errors.Error) as exc:
            if is_authorization_violation(exc):
                raise SystemExit(f"switchyard: {refused(url, who).message}") from None
            raise SystemExit(redact(f"cannot reach NATS at {url}: {exc}")) from None
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(go())
