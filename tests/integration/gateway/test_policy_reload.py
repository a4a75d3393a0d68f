"""The gateway follows the policy file as the router does: an alias (or a model) added while it runs is
served within a check period, without a restart, and a file that does not load leaves the last good policy
in force. A real gateway process on a real nats-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from switchyard.cli.processes import NatsServer, free_port
from switchyard.common.policy import DEFAULT_POLICY
from tests.integration.gateway.harness import make_org, prepare_bus
from tests.support.procs import service_process

pytestmark = pytest.mark.integration
ALIAS = "gpt-4o-mini"


def _write(path: Path, **changes: Any) -> None:
    policy = yaml.safe_load(DEFAULT_POLICY.read_text())
    policy.update(changes)
    path.write_text(yaml.safe_dump(policy))


@pytest.fixture
def gateway(nats_server: NatsServer, tmp_path: Path, sqlite_url: str) -> Iterator[tuple[str, str, Path]]:
    async def prepare() -> str:
        await prepare_bus(nats_server.url, sqlite_url)  # migrations, streams, the local provider announced
        return (await make_org(sqlite_url, "acme", roles=("member",))).keys["member"]

    key = asyncio.run(prepare())
    policy = tmp_path / "policy.yaml"
    _write(policy, version="before")
    port = free_port()
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_DATABASE_URL": sqlite_url,
        "SWITCHYARD_HTTP_PORT": str(port),
        "SWITCHYARD_POLICY_PATH": str(policy),
        "SWITCHYARD_POLICY_CHECK_S": "0.2",
    }
    base = f"http://127.0.0.1:{port}"
    with service_process(
        "switchyard.gateway", env=env, log_path=tmp_path / "gateway.log", ready_url=f"{base}/healthz"
    ):
        yield base, key, policy


async def _card(c: httpx.AsyncClient, base: str, key: str) -> httpx.Response:
    return await c.get(f"{base}/v1/models/{ALIAS}", headers={"Authorization": f"Bearer {key}"})


async def test_an_alias_added_to_the_file_is_served_without_a_restart(
    gateway: tuple[str, str, Path], tmp_path: Path
) -> None:
    base, key, policy = gateway
    async with httpx.AsyncClient() as c:
        assert (await _card(c, base, key)).status_code == 404
        _write(policy, version="after", aliases={ALIAS: "local/smollm2-135m-instruct"})
        deadline = time.monotonic() + 10
        while (r := await _card(c, base, key)).status_code != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert r.status_code == 200 and r.json()["owned_by"] == "local", r.text
        # a file that does not load (an alias of a model it does not list): the last good policy stays
        _write(policy, version="broken", aliases={ALIAS: "local/no-such-model"})
        deadline = time.monotonic() + 10
        log = tmp_path / "gateway.log"
        while "policy not reloaded" not in log.read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            await _card(c, base, key)  # the file is checked when the policy is read
        assert "policy not reloaded" in log.read_text()
        assert (await _card(c, base, key)).status_code == 200
