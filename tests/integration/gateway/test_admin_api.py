"""The admin API against two organisations: every endpoint is scoped to the caller's organisation, roles
and scopes are enforced, changes are recorded as events without secrets, and a revoked key stops working
on every replica at once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from switchyard.cli.main import main
from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.envelope import decode
from switchyard.common.events import AdminActionRecorded
from tests.integration.gateway.harness import Org, auth, gateways, make_org

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("admin") / "jetstream").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def world(
    bus_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[str], Org, Org]]:
    """Two replicas and two organisations, shared by the tests below in order (from the key lifecycle on, they
    change keys)."""
    tmp = tmp_path_factory.mktemp("admin-gw")
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    with gateways(bus_server, db_url, tmp, count=2) as bases:
        a = asyncio.run(make_org(db_url, "acme", roles=("admin", "member", "auditor", "billing")))
        b = asyncio.run(make_org(db_url, "globex", roles=("admin", "member")))
        yield bases, a, b


def _endpoints(user_id: str, key_id: str) -> list[tuple[str, str, dict[str, object] | None]]:
    return [
        ("GET", f"/v1/admin/users/{user_id}", None),
        ("PATCH", f"/v1/admin/users/{user_id}", {"role": "admin"}),
        ("DELETE", f"/v1/admin/users/{user_id}", None),
        ("GET", f"/v1/admin/keys/{key_id}", None),
        ("GET", f"/v1/admin/keys?user_id={user_id}", None),  # as `create` with it: not an empty list
        ("POST", f"/v1/admin/keys/{key_id}/rotate", {}),
        ("DELETE", f"/v1/admin/keys/{key_id}", None),
        ("POST", "/v1/admin/keys", {"name": "x", "user_id": user_id}),
    ]


async def _ids(c: httpx.AsyncClient, base: str, org: Org) -> tuple[str, str]:
    keys = (await c.get(f"{base}/v1/admin/keys", headers=auth(org.keys["admin"]))).json()
    member_key = next(k for k in keys if k["user_id"] == org.users["member"])
    return org.users["member"], member_key["id"]


async def test_every_endpoint_refuses_another_organisations_ids(world: tuple[list[str], Org, Org]) -> None:
    (base, _), a, b = world
    async with httpx.AsyncClient(base_url=base) as c:
        b_user, b_key = await _ids(c, base, b)
        for method, path, body in _endpoints(b_user, b_key):
            r = await c.request(method, path, json=body, headers=auth(a.keys["admin"]))
            assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), (method, path, r.text)
        # Lists and the organisation are A's only.
        users = (await c.get("/v1/admin/users", headers=auth(a.keys["admin"]))).json()
        keys = (await c.get("/v1/admin/keys", headers=auth(a.keys["admin"]))).json()
        org = (await c.get("/v1/admin/organization", headers=auth(a.keys["admin"]))).json()
        # B's key still works: nothing A tried changed it.
        still = await c.get("/v1/models", headers=auth(b.keys["member"]))
    assert {u["id"] for u in users} == set(a.users.values())
    assert len(keys) == 4 and all(k["user_id"] in a.users.values() for k in keys)
    assert "key" not in keys[0] and "key_hash" not in keys[0]
    assert org["id"] == a.id and org["name"] == "acme"
    assert still.status_code == 200


async def test_roles_and_scopes(world: tuple[list[str], Org, Org]) -> None:
    (base, _), a, _b = world
    a_user, a_key = a.users["member"], None
    async with httpx.AsyncClient(base_url=base) as c:
        _, a_key = await _ids(c, base, a)
        writes = [e for e in _endpoints(a_user, a_key) if e[0] != "GET"]
        writes += [
            ("PATCH", "/v1/admin/organization", {"plan": "pro"}),
            ("POST", "/v1/admin/users", {"email": "n@x.y"}),
        ]
        reads = [e for e in _endpoints(a_user, a_key) if e[0] == "GET"]
        reads += [
            ("GET", "/v1/admin/users", None),
            ("GET", "/v1/admin/keys", None),
            ("GET", "/v1/admin/organization", None),
        ]
        got: dict[str, set[int]] = {}
        for role in ("member", "auditor", "billing"):
            for method, path, body in writes + reads:
                r = await c.request(method, path, json=body, headers=auth(a.keys[role]))
                kind = "read" if (method, path, body) in reads else "write"
                got.setdefault(f"{role} {kind}", set()).add(r.status_code)
        # Inference: members and admins yes; auditors and billing no.
        infer = {role: (await c.get("/v1/models", headers=auth(a.keys[role]))).status_code for role in a.keys}
        not_platform = await c.post(
            "/v1/admin/organizations",
            json={"name": "x", "admin_email": "a@x.y"},
            headers=auth(a.keys["admin"]),
        )
    assert got == {
        "member read": {403},
        "member write": {403},
        "auditor read": {200},
        "auditor write": {403},
        "billing read": {200},
        "billing write": {403},
    }
    assert infer == {"admin": 200, "member": 200, "auditor": 403, "billing": 403}
    assert not_platform.status_code == 403
    assert not_platform.json()["error"]["type"] == "permission_error"


async def test_values_the_store_cannot_hold_are_refused_not_500s(world: tuple[list[str], Org, Org]) -> None:
    """Found by the OpenAPI fuzzer: a null plan hit the database's NOT NULL, a key lifetime of 1e20 s and
    an infinite budget overflowed; each is a 400 naming the field, and nothing changes."""
    bases, a, _ = world
    admin = auth(a.keys["admin"])
    async with httpx.AsyncClient(base_url=bases[0]) as c:
        before = (await c.get("/v1/admin/organization", headers=admin)).json()
        for body, param in (
            ({"plan": None}, "plan"),
            ({"monthly_budget_usd": 1e300}, "monthly_budget_usd"),
        ):
            r = await c.patch("/v1/admin/organization", json=body, headers=admin)
            assert (r.status_code, r.json()["error"]["param"]) == (400, param), r.text
        r = await c.patch(
            "/v1/admin/organization", content=b'{"monthly_budget_usd": Infinity}', headers=admin
        )
        assert r.status_code == 400, r.text
        assert (await c.get("/v1/admin/organization", headers=admin)).json() == before
        user = a.users["member"]
        forever = {"name": "x", "user_id": user, "expires_in_s": 1e20}
        r = await c.post("/v1/admin/keys", json=forever, headers=admin)
        assert (r.status_code, r.json()["error"]["param"]) == (400, "expires_in_s"), r.text
        # an empty user id (a script's variable that came out empty) was read as "the caller": an admin's
        # key with every scope, where a member's was asked for
        r = await c.post("/v1/admin/keys", json={"name": "x", "user_id": ""}, headers=admin)
        assert (r.status_code, r.json()["error"]["param"]) == (400, "user_id"), r.text


async def test_key_lifecycle_and_prompt_revocation_on_every_replica(
    world: tuple[list[str], Org, Org], bus_server: NatsServer
) -> None:
    (one, two), a, _b = world
    admin = auth(a.keys["admin"])
    async with httpx.AsyncClient() as c:
        made = await c.post(
            f"{one}/v1/admin/keys",
            json={"name": "ci", "user_id": a.users["member"], "scopes": ["inference"]},
            headers=admin,
        )
        assert made.status_code == 201, made.text
        key, key_id = made.json()["key"], made.json()["id"]
        assert key.startswith(f"sy_{made.json()['prefix']}_")
        beyond = await c.post(
            f"{one}/v1/admin/keys",
            json={"name": "x", "user_id": a.users["member"], "scopes": ["admin"]},
            headers=admin,
        )
        assert beyond.status_code == 400
        for base in (one, two):  # both replicas have it cached now
            assert (await c.get(f"{base}/v1/models", headers=auth(key))).status_code == 200
        revoked = await c.delete(f"{one}/v1/admin/keys/{key_id}", headers=admin)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        started = time.monotonic()
        while (await c.get(f"{two}/v1/models", headers=auth(key))).status_code != 401:
            assert time.monotonic() - started < 1.0, "the other replica still accepts a revoked key"
            await asyncio.sleep(0.01)
        lag = time.monotonic() - started
        assert (await c.get(f"{one}/v1/models", headers=auth(key))).status_code == 401

        # Rotation (of the caller's own key: another user's is refused, test_minted_keys_http.py): the new
        # key works, the old one stops at once (grace 0) or after the grace period.
        own = await c.post(
            f"{one}/v1/admin/keys", json={"name": "own", "scopes": ["inference"]}, headers=admin
        )
        old, old_id = own.json()["key"], own.json()["id"]
        await c.get(f"{two}/v1/models", headers=auth(old))
        rotated = await c.post(f"{one}/v1/admin/keys/{old_id}/rotate", json={"grace_s": 0}, headers=admin)
        assert rotated.status_code == 201
        assert (await c.get(f"{two}/v1/models", headers=auth(rotated.json()["key"]))).status_code == 200
        await asyncio.sleep(0.2)
        assert (await c.get(f"{two}/v1/models", headers=auth(old))).status_code == 401

        # Expiry.
        brief = (
            await c.post(f"{one}/v1/admin/keys", json={"name": "brief", "expires_in_s": 1}, headers=admin)
        ).json()
        assert (await c.get(f"{two}/v1/models", headers=auth(brief["key"]))).status_code == 200
        await asyncio.sleep(1.1)
        assert (await c.get(f"{two}/v1/models", headers=auth(brief["key"]))).status_code == 401

        # Disabling a user revokes their keys everywhere; a role change applies to existing keys.
        await c.get(f"{two}/v1/models", headers=auth(a.keys["auditor"]))
        demoted = await c.patch(
            f"{one}/v1/admin/users/{a.users['billing']}", json={"role": "member"}, headers=admin
        )
        assert demoted.json()["role"] == "member"
        disabled = await c.delete(f"{one}/v1/admin/users/{a.users['auditor']}", headers=admin)
        assert disabled.json()["disabled_at"]
        await asyncio.sleep(0.2)
        assert (await c.get(f"{two}/v1/admin/users", headers=auth(a.keys["auditor"]))).status_code == 401
        assert (await c.get(f"{two}/v1/models", headers=auth(a.keys["billing"]))).status_code == 200

    # Every change is an event for the ledger, and none carries a key.
    nc = await nats.connect(bus_server.url)
    js = nc.jetstream()
    sub = await js.subscribe(subjects.ADMIN_ACTION, ordered_consumer=True)
    seen: list[AdminActionRecorded] = []
    raw_all = b""
    while True:
        try:
            msg = await sub.next_msg(timeout=1.0)
        except nats.errors.TimeoutError:
            break
        raw_all += msg.data
        seen.append(decode(msg.data, (AdminActionRecorded,))[1])  # type: ignore[arg-type]
    await nc.close()
    assert [e.action for e in seen] == [
        "key.created",
        "key.revoked",
        "key.created",
        "key.rotated",
        "key.created",
        "user.updated",
        "user.disabled",
    ]
    assert all(e.tenant_id == a.id and e.actor_user_id == a.users["admin"] for e in seen)
    for secret in (key, rotated.json()["key"], brief["key"]):
        assert secret.encode() not in raw_all
        assert secret.split("_")[2].encode() not in raw_all
    print(f"revocation seen by the other replica after {lag * 1000:.1f} ms")


async def test_a_body_that_is_not_json_is_invalid_json(world: tuple[list[str], Org, Org]) -> None:
    """README, Errors: malformed JSON is `400 invalid_json`. The admin API (and the ledger's digest, the
    feedback endpoint) answered `invalid_value` with `param: "1"` and the words "1: JSON decode error"."""
    bases, a, _ = world
    admin = {**auth(a.keys["admin"]), "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=bases[0]) as c:
        for method, path in (
            ("POST", "/v1/admin/keys"),
            ("POST", "/v1/admin/users"),
            ("PATCH", "/v1/admin/organization"),
            ("POST", "/v1/admin/webhooks"),
            ("POST", "/v1/ledger/digest"),
            ("POST", "/v1/feedback"),
        ):
            r = await c.request(method, path, content=b'{"name": "x",', headers=admin)
            error = r.json()["error"]
            got = (r.status_code, error["code"], error["param"])
            assert got == (400, "invalid_json", None), (path, r.text)
            assert error["message"].startswith("Request body is not valid JSON"), (path, r.text)


async def test_a_rotation_without_a_body_revokes_the_old_key_now(world: tuple[list[str], Org, Org]) -> None:
    """`grace_s` is optional (README: "the old one is revoked (`grace_s: 0`)"), but a rotation sent with no
    body at all (`curl -X POST .../rotate`) was refused: `400 missing_field`, "body: Field required"."""
    bases, a, _ = world
    admin = auth(a.keys["admin"])
    async with httpx.AsyncClient(base_url=bases[0]) as c:
        made = await c.post("/v1/admin/keys", json={"name": "rotate-me"}, headers=admin)
        assert made.status_code == 201, made.text
        rotated = await c.post(f"/v1/admin/keys/{made.json()['id']}/rotate", headers=admin)
        assert rotated.status_code == 201, rotated.text
        assert (await c.get("/v1/models", headers=auth(rotated.json()["key"]))).status_code == 200
        old = await c.get(f"/v1/admin/keys/{made.json()['id']}", headers=admin)
        assert old.json()["revoked_at"] is not None and old.json()["rotated_to"] == rotated.json()["id"]


@pytest.fixture
def operator(nats_server: NatsServer, tmp_path: Path, sqlite_url: str) -> Iterator[tuple[str, Org]]:
    with gateways(nats_server, sqlite_url, tmp_path) as (base,):
        yield base, asyncio.run(make_org(sqlite_url, "operator", platform=True))


async def test_platform_operator_creates_organisations(operator: tuple[str, Org]) -> None:
    base, ops = operator
    async with httpx.AsyncClient(base_url=base) as c:
        r = await c.post(
            "/v1/admin/organizations",
            json={"name": "initech", "plan": "pro", "admin_email": "boss@initech.test"},
            headers=auth(ops.keys["admin"]),
        )
        dup = await c.post(
            "/v1/admin/organizations",
            json={"name": "initech", "admin_email": "b@initech.test"},
            headers=auth(ops.keys["admin"]),
        )
        created = r.json()
        mine = await c.get("/v1/admin/organization", headers=auth(created["key"]["key"]))
    assert r.status_code == 201 and created["admin"]["role"] == "admin"
    assert dup.status_code == 409
    assert mine.json()["id"] == created["organization"]["id"] and mine.json()["plan"] == "pro"


async def test_emergency_throttle(operator: tuple[str, Org]) -> None:
    base, ops = operator
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=base) as c:
        on = await c.put("/v1/admin/throttle", json={"requests_per_min": 0}, headers=auth(ops.keys["admin"]))
        refused = await c.post("/v1/chat/completions", json=body, headers=auth(ops.keys["admin"]))
        off = await c.put(
            "/v1/admin/throttle", json={"requests_per_min": None}, headers=auth(ops.keys["admin"])
        )
        now = await c.get("/v1/admin/throttle", headers=auth(ops.keys["admin"]))
    assert on.json() == {"requests_per_min": 0, "global_limit": 0}
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "emergency_throttle"
    assert refused.headers["retry-after"] == "60"
    assert off.status_code == 200 and now.json() == {"requests_per_min": None, "global_limit": 10_000}


async def test_an_organisations_plan_is_the_platform_operators(operator: tuple[str, Org]) -> None:
    """An organisation admin set its own plan (enterprise: no daily budget) and gave its users any plan;
    the plan is the operator's now, and a user's plan is at most the organisation's."""
    base, ops = operator
    async with httpx.AsyncClient(base_url=base) as c:
        made = await c.post(
            "/v1/admin/organizations",
            json={"name": "hooli", "plan": "pro", "admin_email": "boss@hooli.test"},
            headers=auth(ops.keys["admin"]),
        )
        org_id, admin = made.json()["organization"]["id"], auth(made.json()["key"]["key"])
        own_plan = await c.patch("/v1/admin/organization", json={"plan": "enterprise"}, headers=admin)
        own_budget = await c.patch("/v1/admin/organization", json={"monthly_budget_usd": 50}, headers=admin)
        high_user = await c.post(
            "/v1/admin/users", json={"email": "a@hooli.test", "plan": "enterprise"}, headers=admin
        )
        pro_user = await c.post(
            "/v1/admin/users", json={"email": "b@hooli.test", "plan": "pro"}, headers=admin
        )
        by_admin = await c.patch(f"/v1/admin/organizations/{org_id}", json={"plan": "free"}, headers=admin)
        by_operator = await c.patch(
            f"/v1/admin/organizations/{org_id}", json={"plan": "free"}, headers=auth(ops.keys["admin"])
        )
        back_up = await c.patch(
            f"/v1/admin/users/{pro_user.json()['id']}", json={"plan": "pro"}, headers=admin
        )
        now = (await c.get("/v1/admin/organization", headers=admin)).json()
    for refused in (own_plan, high_user, by_admin, back_up):
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["type"] == "permission_error"
    assert "platform operator" in own_plan.json()["error"]["message"]
    assert "above their organisation's (free)" in back_up.json()["error"]["message"]
    assert (own_budget.status_code, pro_user.status_code, by_operator.status_code) == (200, 201, 200)
    assert (now["plan"], now["monthly_budget_usd"]) == ("free", 50)


def test_switchyard_org_plan_sets_an_organisations_plan(
    operator: tuple[str, Org], capsys: pytest.CaptureFixture[str]
) -> None:
    base, ops = operator
    made = httpx.post(
        f"{base}/v1/admin/organizations",
        json={"name": "vandelay", "admin_email": "art@vandelay.test"},
        headers=auth(ops.keys["admin"]),
    ).json()
    org_id = made["organization"]["id"]
    assert main(["org", "--url", base, "--api-key", ops.keys["admin"], "plan", org_id, "pro"]) == 0
    assert json.loads(capsys.readouterr().out)["plan"] == "pro"
    # the organisation's own admin may not
    assert main(["org", "--url", base, "--api-key", made["key"]["key"], "plan", org_id, "enterprise"]) == 1
    assert "403" in capsys.readouterr().err.splitlines()[-1]
