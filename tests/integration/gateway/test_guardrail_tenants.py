"""Tenant ids in the guardrail file (and in SWITCHYARD_CACHE_TENANTS) that no organisation has: a typo, or
an organisation's name written for its id, silently leaves that organisation with the defaults. The
gateway warns at start (a log line per id and a gauge), and `switchyard guardrails check` exits 1 naming
them, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from switchyard.common.db import create_engine, sessionmaker
from switchyard.gateway.db import migrations
from switchyard.gateway.guardrails.chain import load_file
from switchyard.gateway.guardrails.tenants import unknown_tenants, warn_unknown_tenants
from tests.integration.gateway.harness import make_org

pytestmark = pytest.mark.integration


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchyard.cli.main", "guardrails", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_unknown_tenant_ids_are_named_with_the_organisation_whose_name_they_are(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await migrations().upgrade(db_url)
    acme = await make_org(db_url, "acme")
    other = await make_org(db_url, "globex")
    path = tmp_path / "guardrails.yaml"
    tenants = {acme.id: {"pii": "refuse"}, "globex": {"pii": "refuse"}, "acme-typo": {}}
    path.write_text(yaml.safe_dump({"tenants": tenants}))
    engine = create_engine(db_url)
    try:
        sessions = sessionmaker(engine)
        found = await unknown_tenants(sessions, ["globex", "acme-typo", acme.id])
        assert found == {"globex": other.id, "acme-typo": None}
        with caplog.at_level(logging.WARNING, logger="switchyard.gateway.guardrails.tenants"):
            await warn_unknown_tenants(sessions, load_file(path), cache_tenants={"nobody": None})
    finally:
        await engine.dispose()
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        "globex" in line and other.id in line and "the name of organisation" in line for line in lines
    ), lines
    assert any("acme-typo" in line for line in lines) and any("nobody" in line for line in lines)
    gauge = "switchyard_gateway_unknown_tenants"
    assert REGISTRY.get_sample_value(gauge, {"source": "guardrails"}) == 2
    assert REGISTRY.get_sample_value(gauge, {"source": "cache"}) == 1

    checked = _cli("--file", str(path), "--database-url", db_url)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "acme-typo" in checked.stdout and other.id in checked.stdout
    path.write_text(yaml.safe_dump({"tenants": {acme.id: {"pii": "refuse"}}, "plans": {"free": {}}}))
    fine = _cli("--file", str(path), "--database-url", db_url)
    assert fine.returncode == 0, fine.stdout + fine.stderr
    path.write_text("plans: {gold: {}}")
    broken = _cli("--file", str(path), "--database-url", db_url)
    assert broken.returncode == 2 and "plans.gold" in broken.stderr
