"""The embedded run's streams and buckets are made by `operator` before its services start, from one list
(bus_stores.py), and its services run with SWITCHYARD_BUS_PROVISIONED: they only open them. `switchyard bus
provision` on the running stack changes none of them (the same list, the same embedded sizes)."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from switchyard.cli import bus_stores
from switchyard.cli.devstack import EMBEDDED_STORES
from switchyard.common import provisioning
from tests.e2e.conftest import RunningStack
from tests.e2e.test_bus_auth import _descendants

pytestmark = pytest.mark.e2e


async def _configs(stack: RunningStack) -> dict[str, object]:
    nc = await nats.connect(stack.nats_url)
    try:
        return {info.config.name or "": info.config for info in await nc.jetstream().streams_info()}
    finally:
        await nc.close()


async def test_every_store_is_made_by_the_operator_and_the_services_only_open_them(
    stack: RunningStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for setting, size in EMBEDDED_STORES.items():
        monkeypatch.setenv(setting, size)
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        for store in bus_stores.stores():
            await provisioning.check(js, store.config)  # made, as every service expects it
    finally:
        await nc.close()
    services = 0
    for pid in _descendants(stack.proc.pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if any(part.startswith(b"SWITCHYARD_NATS_USER=") for part in environ):
            services += 1
            assert b"SWITCHYARD_BUS_PROVISIONED=true" in environ
    assert services >= 6


async def test_provisioning_again_changes_nothing(stack: RunningStack) -> None:
    before = await _configs(stack)
    done = stack.cli("bus", "provision")
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == set(before)
    after = await _configs(stack)
    for name, config in before.items():
        found = provisioning.differences(after[name], config)  # type: ignore[arg-type]
        assert not found, (name, found)
