"""The health check (`python -m switchyard.common.healthcheck SERVICE`, compose's and Kubernetes'
readiness) logs in as the service's own user, as compose and Kubernetes now run every service, and must
pass under that user's least-privilege permissions: it publishes the service's ping and hears the replies
on the user's own inbox. Before, a service's user could answer its ping but not send one, so every bus
service of those deployments would have stayed unready."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from nats.aio.msg import Msg

from switchyard.billing.db import migrations
from switchyard.cli.bus_permissions import GRANTS
from switchyard.cli.processes import free_port
from switchyard.common import subjects
from switchyard.common.healthcheck import ping_problem
from tests.support.bus_services import BusService
from tests.support.guarded_bus import GuardedBus
from tests.support.prices import PRICE_SHEET

pytestmark = pytest.mark.integration


async def test_each_services_user_may_ping_its_own_service(guarded: GuardedBus) -> None:
    for service in subjects.SERVICES:
        if service == "gateway" or service not in GRANTS:
            continue
        errors: list[str] = []
        replica = await guarded.connect(service, errors)
        probe = await guarded.connect(service, errors)
        try:

            async def answer(msg: Msg, service: str = service) -> None:
                await msg.respond(orjson.dumps({"instance": f"{service}-1", "stopping": False}))

            await replica.subscribe(subjects.ping_subject(service), cb=answer)
            await replica.flush()
            for _ in range(3):  # as an orchestrator retries its probe (failureThreshold), on a loaded machine
                problem = await ping_problem(probe, service, instance=f"{service}-1", timeout_s=5)
                if problem is None:
                    break
            assert problem is None, (service, problem, errors)
            assert errors == [], (service, errors)
        finally:
            await probe.close()
            await replica.close()
    guarded.assert_clean()


async def test_billings_health_check_passes_as_billing(
    guarded: GuardedBus, sqlite_url: str, tmp_path: Path
) -> None:
    await migrations().upgrade(sqlite_url)
    env = {
        **guarded.env("billing"),
        "SWITCHYARD_DATABASE_URL": sqlite_url,
        "SWITCHYARD_POLICY_PATH": str(PRICE_SHEET),
        "SWITCHYARD_METRICS_PORT": str(free_port()),
        "SWITCHYARD_INSTANCE": "billing-hc",
    }
    log = tmp_path / "billing.log"
    billing = BusService("billing", env=env, log_path=log, ping_url=guarded.operator_url)
    await billing.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "switchyard.common.healthcheck", "billing", "--timeout", "3"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        billing.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "billing: healthy" in done.stdout
    guarded.assert_clean(log)
