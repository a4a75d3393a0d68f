"""A real nats-server as `switchyard up` runs it: every user with its least-privilege permissions
(`cli/bus_permissions.py`), the stores provisioned by `operator`, and a process's environment to connect as
its own user. `violations()` reads what the server refused from its log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from switchyard.cli import bus_permissions, bus_stores, nats_users
from switchyard.cli.processes import NatsServer
from switchyard.common import kv_guard, subjects
from tests.support import event_ids

# What nats-server logs when it refuses a publish or a subscription ("Publish Violation - Subject ...",
# "Subscription Violation - ..."), and what nats-py reports to the client ("permissions violation for ...").
SERVER_SAYS = ("Publish Violation", "Subscription Violation", "Authorization Violation")
CLIENT_SAYS = "permissions violation"


@dataclass
class GuardedBus:
    server: NatsServer
    var_dir: Path
    log: Path

    @property
    def operator_url(self) -> str:
        return nats_users.url_with_credentials(self.server.url, self.var_dir)

    def env(self, process: str) -> dict[str, str]:
        """What `switchyard up` gives `process` (devstack.service_env): its user, its password's file, the
        deployment's event id secret (the tests' one, so that they can work out the ids services derive)."""
        user = nats_users.user_of(process)
        return {
            "SWITCHYARD_NATS_URL": self.server.url,
            "SWITCHYARD_NATS_USER": user,
            "SWITCHYARD_NATS_PASSWORD_FILE": str(nats_users.password_path(self.var_dir, user)),
            "SWITCHYARD_BUS_PROVISIONED": "true",
            "SWITCHYARD_VAR_DIR": str(self.var_dir),
            **event_ids.ENV,
        }

    async def connect(self, user: str, errors: list[str] | None = None) -> Client:
        """A client as `user` (as a service connects: its own inbox prefix); `errors` collects what the
        server said to it (a permissions violation among them)."""
        found = nats_users.embedded_credentials(self.var_dir, user)
        assert found is not None

        async def noted(exc: Exception) -> None:
            if errors is not None:
                errors.append(str(exc))

        options: dict[str, Any] = found.connect_options()
        return await nats.connect(self.server.url, error_cb=noted, **options)

    def assert_clean(self, *logs: Path) -> None:
        """The server refused nothing, and no service (its log in `logs`) was told of a refusal."""
        assert self.violations() == [], self.violations()
        for path in logs:
            text = path.read_text(errors="replace").lower()
            said = [line for line in text.splitlines() if CLIENT_SAYS in line]
            assert said == [], (path.name, said)

    def violations(self) -> list[str]:
        """The server's log lines of refused publishes and subscriptions, so far."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if any(said in line for said in SERVER_SAYS)]


def guarded_bus(base: Path) -> Iterator[GuardedBus]:
    """For a fixture (`yield from guarded_bus(tmp_path)`): started and provisioned, then stopped."""
    var_dir = base / "var"
    log = base / "nats.log"
    server = NatsServer(
        base / "jetstream",
        users=nats_users.ensure_passwords(var_dir),
        permissions=bus_permissions.permissions,
    ).start(log_file=log)
    bus = GuardedBus(server, var_dir, log)
    try:
        asyncio.run(_provision(bus))
        yield bus
    finally:
        server.stop()


async def _provision(bus: GuardedBus) -> None:
    nc = await nats.connect(bus.operator_url)
    try:
        await bus_stores.provision(nc.jetstream())
    finally:
        await nc.close()


async def forge(
    executor: Client, bucket: str, key: str, value: bytes, *, own: str = subjects.KV_BREAKERS
) -> None:
    """Has the server store `value` as the newest revision of `key` in `bucket`, as the executor (whose
    user may write only its own buckets): a direct get of a key of its breakers' bucket answered to
    `$KV.<bucket>.<key>` (common/kv_guard.py). `own`: a bucket the forger writes (another user's: the
    router's routing statistics, the gateway's tasks)."""
    mine = await executor.jetstream().key_value(own)
    await mine.put("bait", value)
    await executor.publish(f"$JS.API.DIRECT.GET.KV_{own}.$KV.{own}.bait", reply=f"$KV.{bucket}.{key}")
    await executor.flush()
    await asyncio.sleep(0.3)


async def restored(bucket: object, key: str, *, within_s: float = 5.0) -> bytes | None:
    """The key's value once its newest revision is a writer's again (None: still forged after `within_s`):
    how a test sees a writer put its own value back over a `forge`d one."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            value, _ = await kv_guard.read(bucket, key)  # type: ignore[arg-type]
            return value
        except kv_guard.ForgedEntry:
            await asyncio.sleep(0.1)
    return None


def scoped_guarded_bus(
    base: Path, monkeypatch: Any, integrator: bus_permissions.Integrator
) -> Iterator[GuardedBus]:
    """`guarded_bus` with `integrator` (another system's user) beside the services, as `switchyard up` makes
    its own: its password kept with theirs, its rights `bus_permissions.integrator_permissions`."""
    passwords, services = nats_users.ensure_passwords, bus_permissions.permissions
    monkeypatch.setattr(
        nats_users,
        "ensure_passwords",
        lambda var_dir: passwords(var_dir, (*nats_users.USERS, integrator.user)),
    )
    monkeypatch.setattr(
        bus_permissions,
        "permissions",
        lambda user: (
            bus_permissions.user_permissions(user, [integrator])
            if user == integrator.user
            else services(user)
        ),
    )
    yield from guarded_bus(base)
