"""An erased organisation is not changed any more: its plan, budget, users and keys are refused (409
`organization_erased`) through the admin API and `switchyard org plan`, as its keys are revoked; the
erasure itself may run again (it finishes an interrupted one)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from switchyard.cli.main import main
from switchyard.cli.processes import NatsServer
from switchyard.gateway.models import ApiKey, User
from tests.integration.gateway.harness import Org, auth, gateways, make_org

pytestmark = pytest.mark.integration


@pytest.fixture
def operator(nats_server: NatsServer, tmp_path: Path, sqlite_url: str) -> Iterator[tuple[str, Org, str]]:
    with gateways(nats_server, sqlite_url, tmp_path) as (base,):
        yield base, asyncio.run(make_org(sqlite_url, "operator", platform=True)), sqlite_url


async def _unrevoke(db_url: str, tenant_id: str) -> None:
    """As a replica that had not dropped the organisation's admin key yet would still let it in: the
    organisation's own writes must be refused by the erasure mark, not only by its keys being revoked."""
    engine = create_async_engine(db_url)
    try:
        async with async_sessionmaker(engine).begin() as s:
            await s.execute(update(ApiKey).where(ApiKey.tenant_id == tenant_id).values(revoked_at=None))
            await s.execute(update(User).where(User.tenant_id == tenant_id).values(disabled_at=None))
    finally:
        await engine.dispose()


def _erased(r: httpx.Response) -> None:
    assert (r.status_code, r.json()["error"]["code"]) == (409, "organization_erased"), r.text


async def test_an_erased_organisation_is_not_changed(
    operator: tuple[str, Org, str], capsys: pytest.CaptureFixture[str]
) -> None:
    base, ops, db_url = operator
    ops_auth = auth(ops.keys["admin"])
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        made = (
            await c.post(
                "/v1/admin/organizations",
                json={"name": "soylent", "plan": "pro", "admin_email": "boss@soylent.test"},
                headers=ops_auth,
            )
        ).json()
        org_id, admin = made["organization"]["id"], auth(made["key"]["key"])
        user = (await c.post("/v1/admin/users", json={"email": "u@soylent.test"}, headers=admin)).json()
        assert (await c.post(f"/v1/admin/organizations/{org_id}/erase", headers=ops_auth)).status_code == 200

        path = f"/v1/admin/organizations/{org_id}"
        _erased(await c.patch(path, json={"plan": "free"}, headers=ops_auth))
        _erased(await c.patch(path, json={"monthly_budget_usd": 10}, headers=ops_auth))
        assert (await c.post(f"{path}/erase", headers=ops_auth)).status_code == 200  # finishing one: allowed

        await _unrevoke(db_url, org_id)
        _erased(await c.patch("/v1/admin/organization", json={"monthly_budget_usd": 5}, headers=admin))
        _erased(await c.post("/v1/admin/users", json={"email": "v@soylent.test"}, headers=admin))
        _erased(await c.patch(f"/v1/admin/users/{user['id']}", json={"name": "x"}, headers=admin))
        _erased(await c.post("/v1/admin/keys", json={"name": "k"}, headers=admin))
        key_id = made["key"]["id"]
        _erased(await c.patch(f"/v1/admin/keys/{key_id}", json={"rpm_limit": 1}, headers=admin))
        _erased(await c.post(f"/v1/admin/keys/{key_id}/rotate", headers=admin))
        org = (await c.get("/v1/admin/organization", headers=admin)).json()
    assert (org["plan"], org["monthly_budget_usd"]) == ("pro", None)

    exited = await asyncio.to_thread(
        main, ["org", "--url", base, "--api-key", ops.keys["admin"], "plan", org_id, "free"]
    )
    said = capsys.readouterr().err
    assert exited == 1 and "409" in said and "organization_erased" in said
