"""A key's own limits bind what it mints, and another user's secret is not handed out, against a real
gateway: an admin key restricted to one model, 10 requests and 1,000 tokens a minute, $1 a month and an
hour's life cannot create, change or rotate its way to a key without those limits (left out: the new key
takes them; asked wider: 403 naming the field), and an admin cannot rotate (so receive the secret of)
another user's key, only revoke it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from switchyard.common import subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.events import AdminActionRecorded
from switchyard.gateway.tenants import create_api_key
from tests.integration.gateway.harness import Org, auth, gateway_stack, make_org, stored_events

pytestmark = pytest.mark.integration
World = tuple[str, str, Org, str]  # the bus, the gateway, the organisation, its service key's id
OPERATOR = "ops"

MODEL = "local/smollm2-135m-instruct"
OTHER = "openai/gpt-4o-mini"
RESTRICTED = {
    "name": "restricted admin",
    "models": [MODEL],
    "rpm_limit": 10,
    "tpm_limit": 1000,
    "max_budget_usd": 1.0,
    "budget_duration": "1mo",
    "expires_in_s": 3600,
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("minted")
    with gateway_stack(tmp) as (server, db_url, (base,)):
        acme = asyncio.run(make_org(db_url, "acme", roles=("admin", "member")))
        acme.keys[OPERATOR] = asyncio.run(make_org(db_url, "ops", platform=True)).keys["admin"]
        yield server.url, base, acme, asyncio.run(_service_key(db_url, acme.id))


async def _service_key(db_url: str, tenant_id: str) -> str:
    """The id of a key of the organisation's (no user), as `switchyard keys create` cannot make."""
    engine = create_engine(db_url)
    try:
        _, row = await create_api_key(
            sessionmaker(engine), tenant_id=tenant_id, name="svc", scopes="inference"
        )
        return row.id
    finally:
        await engine.dispose()


def _refused(r: httpx.Response) -> tuple[int, str, str | None]:
    error = r.json()["error"]
    return r.status_code, error["type"], error.get("param")


async def test_a_restricted_admin_key_mints_no_wider_key(world: World) -> None:
    _, base, acme, _ = world
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        made = await c.post("/v1/admin/keys", json=RESTRICTED, headers=auth(acme.keys["admin"]))
        assert made.status_code == 201, made.text
        restricted, mine = made.json(), auth(made.json()["key"])

        # Left out: the new key takes the calling key's limits and expiry.
        plain = await c.post("/v1/admin/keys", json={"name": "plain"}, headers=mine)
        assert plain.status_code == 201, plain.text
        inherited = plain.json()
        for field in ("models", "rpm_limit", "tpm_limit", "max_budget_usd", "budget_duration", "expires_at"):
            assert inherited[field] == restricted[field], field
        used = await c.post(
            "/v1/chat/completions",
            json={"model": OTHER, "messages": [{"role": "user", "content": "hi"}]},
            headers=auth(inherited["key"]),
        )
        assert used.status_code == 403 and "model_not_allowed" in used.text

        # Narrower: taken as asked.
        narrower = await c.post(
            "/v1/admin/keys",
            json={"name": "narrower", "rpm_limit": 5, "max_budget_usd": 0.5, "budget_duration": None},
            headers=mine,
        )
        assert narrower.status_code == 201, narrower.text
        assert (narrower.json()["rpm_limit"], narrower.json()["max_budget_usd"]) == (5, 0.5)
        assert narrower.json()["budget_duration"] is None  # a lifetime $0.50: less than $1 a month

        # Asked wider: 403 naming the field.
        wider = {
            "models": {"models": None},
            "models ": {"models": [MODEL, OTHER]},
            "rpm_limit": {"rpm_limit": 11},
            "tpm_limit": {"tpm_limit": None},
            "max_budget_usd": {"max_budget_usd": 2},
            "budget_duration": {"budget_duration": "1d"},
            "expires_in_s": {"expires_in_s": 7200},
            "expires_in_s ": {"expires_in_s": None},
        }
        answers = {
            name: await c.post("/v1/admin/keys", json={"name": "wide", **body}, headers=mine)
            for name, body in wider.items()
        }
        # Nor by changing a key, its own included, nor by rotating a wider key of the same user.
        keys = (await c.get("/v1/admin/keys", headers=mine)).json()
        full = next(k for k in keys if k["name"] == "admin")
        patched = {
            "own models": await c.patch(
                f"/v1/admin/keys/{restricted['id']}", json={"models": None}, headers=mine
            ),
            "another's budget": await c.patch(
                f"/v1/admin/keys/{inherited['id']}", json={"max_budget_usd": 100}, headers=mine
            ),
        }
        rotated_full = await c.post(f"/v1/admin/keys/{full['id']}/rotate", json={}, headers=mine)
        rotated_own = await c.post(f"/v1/admin/keys/{inherited['id']}/rotate", json={}, headers=mine)
        narrowed = await c.patch(f"/v1/admin/keys/{restricted['id']}", json={"rpm_limit": 8}, headers=mine)
        after = (await c.get(f"/v1/admin/keys/{restricted['id']}", headers=mine)).json()
    for name, r in answers.items():
        assert _refused(r) == (403, "permission_error", name.strip()), (name, r.text)
    for name, r in patched.items():
        assert _refused(r)[:2] == (403, "permission_error"), (name, r.text)
    assert _refused(patched["own models"])[2] == "models"
    assert _refused(patched["another's budget"])[2] == "max_budget_usd"
    assert narrowed.status_code == 200 and narrowed.json()["rpm_limit"] == 8
    assert _refused(rotated_full) == (403, "permission_error", "key_id"), rotated_full.text
    assert "every model" in rotated_full.json()["error"]["message"]
    assert rotated_own.status_code == 201, rotated_own.text
    assert (after["models"], after["max_budget_usd"]) == ([MODEL], 1.0)
    expires = datetime.fromisoformat(inherited["expires_at"]).replace(tzinfo=UTC)
    assert expires <= datetime.now(UTC) + timedelta(seconds=3600)


async def test_an_admin_revokes_but_does_not_rotate_another_users_key(world: World) -> None:
    """Rotating hands the caller the new secret: an admin holding a member's key could act as that member,
    every request recorded as theirs. Their own keys and the organisation's service keys (no user) rotate;
    another user's key is refused (403) and stays as it was; it can be revoked."""
    bus_url, base, acme, service = world
    admin = auth(acme.keys["admin"])
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        keys = (await c.get("/v1/admin/keys", headers=admin)).json()
        members = next(k for k in keys if k["user_id"] == acme.users["member"])
        theirs = await c.post(f"/v1/admin/keys/{members['id']}/rotate", json={}, headers=admin)
        still = await c.get("/v1/models", headers=auth(acme.keys["member"]))
        own = (await c.post("/v1/admin/keys", json={"name": "own"}, headers=admin)).json()
        rotated_own = await c.post(f"/v1/admin/keys/{own['id']}/rotate", json={}, headers=admin)
        rotated_service = await c.post(f"/v1/admin/keys/{service}/rotate", json={}, headers=admin)
        revoked = await c.delete(f"/v1/admin/keys/{members['id']}", headers=admin)
    assert _refused(theirs) == (403, "permission_error", "key_id"), theirs.text
    assert acme.users["member"] in theirs.json()["error"]["message"]
    assert still.status_code == 200
    assert rotated_own.status_code == 201 and rotated_own.json()["user_id"] == acme.users["admin"]
    assert rotated_service.status_code == 201 and rotated_service.json()["user_id"] is None
    assert revoked.status_code == 200
    events, _ = await stored_events(bus_url, subjects.ADMIN_ACTION, AdminActionRecorded)
    rotations = [e for e in events if e.action == "key.rotated"]
    assert {e.target_id for e in rotations} >= {own["id"], service}
    assert members["id"] not in {e.target_id for e in rotations}
    assert all(e.actor_user_id == acme.users["admin"] for e in rotations if e.target_id == own["id"])


async def test_changes_that_would_break_a_user_or_a_rotation_are_refused(world: World) -> None:
    """`null` for a user's role or name was a 500 (the columns are NOT NULL); rotating a key twice in its
    grace period left two live successors (the first one no longer its `rotated_to`, so its lineage
    untraceable); a key with no scope at all was created (it can do nothing)."""
    _, base, acme, _ = world
    admin = auth(acme.keys["admin"])
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        nulls = {
            field: await c.patch(f"/v1/admin/users/{acme.users['member']}", json={field: None}, headers=admin)
            for field in ("role", "name")
        }
        made = (await c.post("/v1/admin/keys", json={"name": "twice"}, headers=admin)).json()
        first = await c.post(f"/v1/admin/keys/{made['id']}/rotate", json={"grace_s": 600}, headers=admin)
        second = await c.post(f"/v1/admin/keys/{made['id']}/rotate", json={"grace_s": 600}, headers=admin)
        empty = await c.post("/v1/admin/keys", json={"name": "nothing", "scopes": []}, headers=admin)
        member = (await c.get(f"/v1/admin/users/{acme.users['member']}", headers=admin)).json()
    for field, r in nulls.items():
        assert _refused(r) == (400, "invalid_request_error", field), r.text
    assert member["role"] == "member"
    assert first.status_code == 201
    assert _refused(second) == (400, "invalid_request_error", "key_id"), second.text
    assert first.json()["id"] in second.json()["error"]["message"]
    assert _refused(empty) == (400, "invalid_request_error", "scopes"), empty.text


async def test_a_restricted_operator_key_makes_no_wider_first_key(world: World) -> None:
    """`POST /v1/admin/organizations` hands the operator the new organisation's first admin key: a
    restricted operator key's limits and expiry go with it."""
    _, base, acme, _ = world
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        made = await c.post("/v1/admin/keys", json=RESTRICTED, headers=auth(acme.keys[OPERATOR]))
        assert made.status_code == 201, made.text
        org = await c.post(
            "/v1/admin/organizations",
            json={"name": "initech", "admin_email": "boss@initech.test"},
            headers=auth(made.json()["key"]),
        )
    assert org.status_code == 201, org.text
    first = org.json()["key"]
    for field in ("models", "rpm_limit", "tpm_limit", "max_budget_usd", "budget_duration", "expires_at"):
        assert first[field] == made.json()[field], field


async def test_a_restricted_admin_key_widens_no_organisation_setting(world: World) -> None:
    """A key with limits of its own (here one model and $1 a month) would be exceeded by what it can
    change for the whole organisation: it may lower the organisation's monthly budget but not raise or
    lift it, not raise a user's plan (their daily budget), and not make a user an admin (their sign-on's
    token has no limits): 403 key_wider_than_caller naming the field. An unrestricted admin key may."""
    _, base, acme, _ = world
    admin = auth(acme.keys["admin"])
    member = acme.users["member"]
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        made = await c.post("/v1/admin/keys", json=RESTRICTED, headers=admin)
        assert made.status_code == 201, made.text
        mine = auth(made.json()["key"])
        setup = [
            await c.patch("/v1/admin/organization", json={"monthly_budget_usd": 100}, headers=admin),
            await c.patch(f"/v1/admin/users/{member}", json={"plan": "free"}, headers=admin),
        ]
        raised = await c.patch("/v1/admin/organization", json={"monthly_budget_usd": 200}, headers=mine)
        lifted = await c.patch("/v1/admin/organization", json={"monthly_budget_usd": None}, headers=mine)
        plan = await c.patch(f"/v1/admin/users/{member}", json={"plan": "pro"}, headers=mine)
        org_plan = await c.patch(f"/v1/admin/users/{member}", json={"plan": None}, headers=mine)
        promoted = await c.patch(f"/v1/admin/users/{member}", json={"role": "admin"}, headers=mine)
        new_admin = await c.post(
            "/v1/admin/users", json={"email": "boss@acme.test", "role": "admin"}, headers=mine
        )
        lowered = await c.patch("/v1/admin/organization", json={"monthly_budget_usd": 50}, headers=mine)
        renamed = await c.patch(f"/v1/admin/users/{member}", json={"name": "M", "plan": "free"}, headers=mine)
        back = await c.patch("/v1/admin/organization", json={"monthly_budget_usd": None}, headers=admin)
    assert all(r.status_code == 200 for r in setup), [r.text for r in setup]
    for r, param in (
        (raised, "monthly_budget_usd"),
        (lifted, "monthly_budget_usd"),
        (plan, "plan"),
        (org_plan, "plan"),
        (promoted, "role"),
        (new_admin, "role"),
    ):
        assert _refused(r) == (403, "permission_error", param), r.text
        assert r.json()["error"]["code"] == "key_wider_than_caller"
    assert (lowered.status_code, lowered.json()["monthly_budget_usd"]) == (200, 50), lowered.text
    assert renamed.status_code == 200, renamed.text
    assert back.status_code == 200 and back.json()["monthly_budget_usd"] is None


async def test_an_organisation_keeps_an_admin(world: World) -> None:
    """Demoting or disabling the last enabled admin left an organisation nobody could manage (no admin
    of its own, and the operator manages organisations, not their users): refused (409) until another
    admin exists. Runs last: it demotes acme's admin."""
    _, base, acme, _ = world
    admin = auth(acme.keys["admin"])
    me, member = acme.users["admin"], acme.users["member"]
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        demoted = await c.patch(f"/v1/admin/users/{me}", json={"role": "member"}, headers=admin)
        disabled = await c.delete(f"/v1/admin/users/{me}", headers=admin)
        still = await c.get("/v1/admin/users", headers=admin)
        promoted = await c.patch(f"/v1/admin/users/{member}", json={"role": "admin"}, headers=admin)
        then = await c.patch(f"/v1/admin/users/{me}", json={"role": "member"}, headers=admin)
    for r in (demoted, disabled):
        assert (r.status_code, r.json()["error"]["code"]) == (409, "conflict"), r.text
        assert "last admin" in r.json()["error"]["message"]
    assert still.status_code == 200
    assert promoted.status_code == 200 and then.status_code == 200, then.text
