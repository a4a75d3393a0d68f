"""A nats-server with users (as `switchyard up` starts it) lets no one in without a user and its password;
a service whose credentials it refuses stops with one line and exit 2 (no traceback, no password), and
the CLI finds the embedded run's credentials in its var dir by itself."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from switchyard.cli import nats_users
from switchyard.cli.processes import NatsServer
from switchyard.common.healthcheck import check_ping

pytestmark = pytest.mark.integration


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[NatsServer]:
    var = tmp_path / "var"
    server = NatsServer(var / "jetstream", users=nats_users.ensure_passwords(var)).start()
    try:
        yield server
    finally:
        server.stop()


def _env(server: NatsServer, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    env.update(
        SWITCHYARD_NATS_URL=server.url,
        SWITCHYARD_VAR_DIR=str(server.store_dir.parent),
        SWITCHYARD_HTTP_PORT="1",  # never reached: the gateway stops at the bus
        **more,
    )
    return env


async def test_only_a_known_user_with_its_password_gets_in(guarded: NatsServer) -> None:
    for url, kwargs in (
        (guarded.url, {}),
        (guarded.url, {"user": "operator", "password": "wrong"}),
        (guarded.url, {"user": "nobody", "password": guarded.users["operator"]}),
    ):
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(url, allow_reconnect=False, connect_timeout=2, **kwargs)  # type: ignore[arg-type]
    nc = await nats.connect(guarded.url, user="executor", password=guarded.users["executor"])
    assert nc.is_connected
    await nc.close()
    # the embedded run's server configuration holds the passwords: its owner alone reads it
    config = guarded.store_dir.parent / f"nats-{guarded.port}.conf"
    assert oct(config.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("service", ["router", "gateway"])
@pytest.mark.parametrize("credentials", ["wrong", "none"])
def test_a_refused_service_stops_in_one_line(guarded: NatsServer, service: str, credentials: str) -> None:
    more = {"SWITCHYARD_NATS_USER": service, "SWITCHYARD_NATS_PASSWORD": "not-the-password"}
    done = subprocess.run(
        [sys.executable, "-m", f"switchyard.{service}"],
        env=_env(guarded, **(more if credentials == "wrong" else {})),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    said = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert said[-1].startswith(f"switchyard-{service}: cannot start: NATS at {guarded.url} refused")
    expected = f"user '{service}'" if credentials == "wrong" else "no credentials given"
    assert expected in said[-1]
    assert "Traceback" not in done.stderr
    assert "not-the-password" not in done.stderr + done.stdout


def test_the_cli_finds_the_embedded_runs_credentials(guarded: NatsServer) -> None:
    env = _env(guarded, SWITCHYARD_NATS_PORT=str(guarded.port))
    del env["SWITCHYARD_NATS_URL"]  # as after `make run`: nothing set
    cli = [sys.executable, "-m", "switchyard.cli.main"]
    done = subprocess.run([*cli, "dlq", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "no dead letters"), done.stderr
    # a URL of one's own gets none of them: refused, in one line
    done = subprocess.run(
        [*cli, "dlq", "list"],
        env={**env, "SWITCHYARD_NATS_URL": guarded.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"switchyard dlq: NATS at {guarded.url} refused the connection (Authorization Violation): "
        "no credentials given: set SWITCHYARD_NATS_USER and SWITCHYARD_NATS_PASSWORD(_FILE)"
    ]


async def test_the_health_check_connects_with_the_credentials(guarded: NatsServer) -> None:
    bare = await check_ping(guarded.url, "router", instance="", timeout_s=1)
    assert bare is not None and "Authorization Violation" in bare
    who = {"user": "router", "password": guarded.users["router"]}
    # let in: nobody answers the ping (no router runs), which is what it then says
    assert await check_ping(guarded.url, "router", instance="", timeout_s=1, credentials=who) == (
        "router did not answer its ping on switchyard.ping.router within 1s"
    )
