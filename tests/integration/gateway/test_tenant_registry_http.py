"""The gateway keeps the tenant registry the pipeline reads (`switchyard-tenants`) true to its database, on a
real gateway, nats-server and database (SQLite and PostgreSQL): an organisation of an existing deployment
is registered at the gateway's start (and the registry marked kept); one the operator creates is registered
before the call answers; one made in the database behind the gateway's back (`switchyard db bootstrap`
while it runs) when its key first authenticates; an erased one is marked erased at once and stays so; an
entry lost from the bucket comes back at the next sync."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import nats
import pytest
from sqlalchemy import select

from switchyard.cli.main import main
from switchyard.cli.processes import NatsServer
from switchyard.common import tenants
from switchyard.common.db import create_engine, sessionmaker
from switchyard.gateway.access import service
from switchyard.gateway.models import Tenant
from tests.integration.gateway.harness import auth, gateways, make_org, prepare_bus

pytestmark = pytest.mark.integration


def registry(url: str) -> tuple[dict[str, str], bool]:
    """The registry's tenants (id -> status), and whether it is kept."""

    async def read() -> tuple[dict[str, str], bool]:
        nc = await nats.connect(url)
        try:
            bucket = await tenants.registry_bucket(nc.jetstream())
            return {e.tenant_id: e.status for e in await tenants.entries(bucket)}, await tenants.is_kept(
                bucket
            )
        finally:
            await nc.close()

    return asyncio.run(read())


def purge(url: str, *keys: str) -> None:
    async def go() -> None:
        nc = await nats.connect(url)
        try:
            bucket = await tenants.registry_bucket(nc.jetstream())
            for key in keys:
                await bucket.purge(key)
        finally:
            await nc.close()

    asyncio.run(go())


def erased_at(db_url: str, tenant_id: str) -> object:
    async def read() -> object:
        engine = create_engine(db_url)
        try:
            async with sessionmaker(engine)() as s:
                return (await s.execute(select(Tenant.erased_at).where(Tenant.id == tenant_id))).scalar_one()
        finally:
            await engine.dispose()

    return asyncio.run(read())


async def close(db_url: str, tenant_id: str) -> None:
    engine = create_engine(db_url)
    try:
        await service.close_organization(sessionmaker(engine), tenant_id=tenant_id)
    finally:
        await engine.dispose()


def test_the_gateway_keeps_the_registry_true_to_its_organisations(
    nats_server: NatsServer, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(prepare_bus(nats_server.url, db_url))
    ops = asyncio.run(make_org(db_url, "operator", platform=True))
    existing = asyncio.run(make_org(db_url, "existing", roles=("member",)))
    assert registry(nats_server.url) == ({}, False)
    with gateways(nats_server, db_url, tmp_path) as (base,), httpx.Client(base_url=base, timeout=30) as c:
        # an existing deployment's organisations, registered at start, and the registry kept
        found, kept = registry(nats_server.url)
        assert kept and found == {ops.id: "active", existing.id: "active"}

        created = c.post(
            "/v1/admin/organizations",
            json={"name": "newco", "admin_email": "a@newco.test"},
            headers=auth(ops.keys["admin"]),
        )
        assert created.status_code == 201, created.text
        newco = created.json()["organization"]["id"]
        assert registry(nats_server.url)[0].get(newco) == "active"  # before the call answered

        capsys.readouterr()
        made = ["org", "--url", base, "--api-key", ops.keys["admin"], "create", "cli-co"]
        assert main([*made, "--admin-email", "a@cli-co.test"]) == 0
        cli_co = json.loads(capsys.readouterr().out)["organization"]["id"]
        assert registry(nats_server.url)[0].get(cli_co) == "active"

        # made behind the gateway's back: registered once one of its keys works
        late = asyncio.run(make_org(db_url, "late", roles=("member",)))
        assert late.id not in registry(nats_server.url)[0]  # the next sync is minutes away
        assert c.get("/v1/models", headers=auth(late.keys["member"])).status_code == 200
        assert registry(nats_server.url)[0].get(late.id) == "active"

        erased = c.post(f"/v1/admin/organizations/{existing.id}/erase", headers=auth(ops.keys["admin"]))
        assert erased.status_code == 200, erased.text
        assert registry(nats_server.url)[0].get(existing.id) == "erased"
        assert erased_at(db_url, existing.id) is not None


def test_a_lost_entry_comes_back_with_the_next_sync(
    nats_server: NatsServer, tmp_path: Path, db_url: str
) -> None:
    """The bucket lost (a NATS cluster rebuilt) or an entry deleted: the gateways write it again, an
    erased organisation as erased."""
    asyncio.run(prepare_bus(nats_server.url, db_url))
    kept = asyncio.run(make_org(db_url, "kept"))
    gone = asyncio.run(make_org(db_url, "gone"))
    asyncio.run(close(db_url, gone.id))  # erased while no gateway ran
    with gateways(nats_server, db_url, tmp_path, env={"SWITCHYARD_TENANT_SYNC_S": "1"}):
        assert registry(nats_server.url) == ({kept.id: "active", gone.id: "erased"}, True)
        purge(nats_server.url, tenants.key_of(kept.id), tenants.key_of(gone.id), tenants.KEPT)
        assert registry(nats_server.url) == ({}, False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and registry(nats_server.url) != (
            {kept.id: "active", gone.id: "erased"},
            True,
        ):
            time.sleep(0.2)
        assert registry(nats_server.url) == ({kept.id: "active", gone.id: "erased"}, True)
