"""The CLI's commands that act on the bus (dead letters, the tenant registry, the classifier's heads):
one short-lived NATS connection per command, its failure one line naming the URL (its password
redacted), not nats-py's traceback per attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
from nats.js import JetStreamContext

from switchyard.cli.devstack import StackSettings
from switchyard.common.logs import redact

T = TypeVar("T")


def on_bus(url: str | None, work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """`work` on JetStream at `url` (default: the running stack's, `SWITCHYARD_NATS_URL`), its result."""
    url = url or StackSettings().bus_url()

    async def quiet(exc: Exception) -> None:  # nats-py's default prints each failed attempt's traceback
        pass

    async def go() -> T:
        try:
            nc = await nats.connect(
                url, connect_timeout=5, max_reconnect_attempts=1, allow_reconnect=False, error_cb=quiet
            )
        except (OSError, nats.errors.Error) as exc:
            raise SystemExit(redact(f"cannot reach NATS at {url}: {exc}")) from None
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(go())
