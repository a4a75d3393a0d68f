"""Who may do what, route by route, against one real gateway: every operation of its OpenAPI document
(and the WebSocket route, and Gemini's `?key=`) is asked by each role's key, a service key (no user), a
key narrowed to one scope, and no key, and the answer must be the README's role table ("Organisations,
users, keys and roles"): allowed (anything but 401/403), refused (403 `permission_error`) or
unauthenticated (401). A route the table below does not name fails the test, so a new route needs a
row. Bodies are empty or ids made up: the allowed answer is then a 400 or 404, so nothing runs."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from switchyard.common.db import create_engine, sessionmaker
from switchyard.gateway.tenants import create_api_key
from tests.integration.gateway.harness import Org, auth, gateway_stack, make_org

pytestmark = pytest.mark.integration

# Who each kind of route admits (README role table; "any": every valid key, "public": no key needed).
ADMITS: dict[str, frozenset[str]] = {
    "public": frozenset(
        {"none", "admin", "member", "auditor", "billing", "service", "admin_only", "operator"}
    ),
    "any": frozenset({"admin", "member", "auditor", "billing", "service", "admin_only", "operator"}),
    "inference": frozenset({"admin", "member", "service", "operator"}),
    "audit": frozenset({"admin", "auditor", "admin_only", "operator"}),
    "billing": frozenset({"admin", "billing", "operator"}),
    "directory": frozenset({"admin", "auditor", "billing", "admin_only", "operator"}),
    "billing_or_admin": frozenset({"admin", "billing", "admin_only", "operator"}),
    "admin": frozenset({"admin", "admin_only", "operator"}),
    "platform": frozenset({"operator"}),
}
CALLERS = ("none", "admin", "member", "auditor", "billing", "service", "admin_only", "operator")

# (method, OpenAPI path pattern) -> the kind of route. Ids in paths are made up (see _concrete).
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "public",
    ("GET", "/readyz"): "public",
    ("GET", "/metrics"): "public",
    ("POST", "/v1/chat/completions"): "inference",
    ("POST", "/v1/completions"): "inference",
    ("POST", "/v1/embeddings"): "inference",
    ("POST", "/v1/responses"): "inference",
    ("POST", "/v1/responses/input_tokens"): "inference",
    ("POST", "/v1/responses/{response_id}/cancel"): "inference",
    ("POST", "/v1/responses/{name}"): "inference",
    ("GET", "/v1/responses/{response_id}"): "inference",
    ("DELETE", "/v1/responses/{response_id}"): "inference",
    ("GET", "/v1/responses/{response_id}/input_items"): "inference",
    ("POST", "/v1/messages"): "inference",
    ("POST", "/v1/messages/count_tokens"): "inference",
    ("POST", "/v1/messages/batches"): "inference",
    ("GET", "/v1/messages/batches"): "inference",
    ("GET", "/v1/messages/batches/{message_batch_id}"): "inference",
    ("POST", "/v1/messages/batches/{message_batch_id}/cancel"): "inference",
    ("DELETE", "/v1/messages/batches/{message_batch_id}"): "inference",
    ("GET", "/v1/messages/batches/{message_batch_id}/results"): "inference",
    ("POST", "/v1/tasks"): "inference",
    ("GET", "/v1/tasks/{task_id}"): "inference",
    ("DELETE", "/v1/tasks/{task_id}"): "inference",
    ("GET", "/v1/models"): "inference",
    ("GET", "/v1/models/{model}"): "inference",
    ("GET", "/v1beta/models"): "inference",
    ("GET", "/v1beta/models/{model}"): "inference",
    ("POST", "/v1beta/models/{target}"): "inference",
    ("POST", "/v1/models/{target}"): "inference",  # Gemini's methods under /v1 (not in the document)
    ("POST", "/v1/files"): "inference",
    ("GET", "/v1/files"): "inference",
    ("GET", "/v1/files/{file_id}"): "inference",
    ("DELETE", "/v1/files/{file_id}"): "inference",
    ("GET", "/v1/files/{file_id}/content"): "inference",
    ("POST", "/v1/batches"): "inference",
    ("GET", "/v1/batches"): "inference",
    ("GET", "/v1/batches/{batch_id}"): "inference",
    ("POST", "/v1/batches/{batch_id}/cancel"): "inference",
    ("POST", "/v1/conversations"): "inference",
    ("GET", "/v1/conversations/{conversation_id}"): "inference",
    ("POST", "/v1/conversations/{conversation_id}"): "inference",
    ("DELETE", "/v1/conversations/{conversation_id}"): "inference",
    ("GET", "/v1/conversations/{conversation_id}/items"): "inference",
    ("POST", "/v1/conversations/{conversation_id}/items"): "inference",
    ("GET", "/v1/conversations/{conversation_id}/items/{item_id}"): "inference",
    ("DELETE", "/v1/conversations/{conversation_id}/items/{item_id}"): "inference",
    ("POST", "/v1/feedback"): "inference",
    ("GET", "/v1/ledger/checkpoint"): "any",
    ("GET", "/v1/ledger/proof/consistency"): "any",
    ("GET", "/v1/ledger/proof/inclusion"): "audit",
    ("POST", "/v1/ledger/digest"): "audit",  # confirms a guessed prompt: the ledger's readers only
    ("GET", "/v1/usage"): "billing",
    ("GET", "/v1/usage/statement"): "billing",
    ("GET", "/v1/usage/forecast"): "billing",
    ("GET", "/v1/usage/savings"): "billing",
    ("GET", "/v1/admin/organization"): "directory",
    ("PATCH", "/v1/admin/organization"): "admin",
    ("GET", "/v1/admin/users"): "directory",
    ("POST", "/v1/admin/users"): "admin",
    ("GET", "/v1/admin/users/{user_id}"): "directory",
    ("PATCH", "/v1/admin/users/{user_id}"): "admin",
    ("DELETE", "/v1/admin/users/{user_id}"): "admin",
    ("GET", "/v1/admin/keys"): "directory",
    ("POST", "/v1/admin/keys"): "admin",
    ("GET", "/v1/admin/keys/{key_id}"): "directory",
    ("PATCH", "/v1/admin/keys/{key_id}"): "admin",
    ("DELETE", "/v1/admin/keys/{key_id}"): "admin",
    ("POST", "/v1/admin/keys/{key_id}/rotate"): "admin",
    ("GET", "/v1/admin/webhooks"): "billing_or_admin",
    ("POST", "/v1/admin/webhooks"): "admin",
    ("DELETE", "/v1/admin/webhooks/{webhook_id}"): "admin",
    ("POST", "/v1/admin/organizations"): "platform",
    ("POST", "/v1/admin/organizations/{org_id}/erase"): "platform",
    ("PATCH", "/v1/admin/organizations/{org_id}"): "platform",
    ("GET", "/v1/admin/throttle"): "platform",
    ("PUT", "/v1/admin/throttle"): "platform",
}

# Bodies an allowed caller is refused for (400), so that nothing is created, changed or run.
BODIES: dict[tuple[str, str], object] = {
    ("PATCH", "/v1/admin/organization"): {"plan": None},
    ("POST", "/v1/admin/users"): {"email": "not an email"},
    ("POST", "/v1/admin/keys"): {"name": ""},
    ("PATCH", "/v1/admin/keys/{key_id}"): {"rpm_limit": -1},
    ("POST", "/v1/admin/keys/{key_id}/rotate"): {"grace_s": -1},
    ("PATCH", "/v1/admin/users/{user_id}"): {"role": "nobody"},
    ("POST", "/v1/admin/webhooks"): {"url": "not a url"},
    ("POST", "/v1/admin/organizations"): {"name": ""},
    ("PATCH", "/v1/admin/organizations/{org_id}"): {"plan": None},
    ("PUT", "/v1/admin/throttle"): {"requests_per_min": -1},
    ("POST", "/v1/feedback"): {"task_id": "task-made-up", "rating": "good"},
}
# Query parameters a route requires (a request without them is a 400 before any authentication).
QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/v1/ledger/proof/inclusion"): {"seq": "1"},
    ("GET", "/v1/ledger/proof/consistency"): {"from": "1"},
}


def _concrete(path: str) -> str:
    """The path with made-up ids (a Gemini method for `{target}`)."""
    path = path.replace("{target}", "made-up:generateContent")
    return re.sub(r"\{[a-z_]+\}", "made-up-id", path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Org, Org]]:
    tmp = tmp_path_factory.mktemp("authz")
    # the unauthenticated requests below are failures from one address: not a guesser's
    lockout = {"SWITCHYARD_AUTH_LOCKOUT_CLIENT_FAILURES": "10000"}
    with gateway_stack(tmp, env=lockout) as (_, db_url, (base,)):
        acme = asyncio.run(make_org(db_url, "acme", roles=("admin", "member", "auditor", "billing")))
        globex = asyncio.run(make_org(db_url, "globex", roles=("admin", "member")))
        ops = asyncio.run(make_org(db_url, "ops", roles=("admin",), platform=True))
        callers = {role: acme.keys[role] for role in ("admin", "member", "auditor", "billing")}
        callers["operator"] = ops.keys["admin"]
        callers.update(asyncio.run(_narrow_keys(db_url, acme)))
        yield base, callers, acme, globex


async def _narrow_keys(db_url: str, org: Org) -> dict[str, str]:
    """A service key (no user: a member) and an admin's key with the `admin` scope only."""
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    try:
        service, _ = await create_api_key(sessions, tenant_id=org.id, name="service", scopes="inference")
        admin_only, _ = await create_api_key(
            sessions, tenant_id=org.id, name="provisioning", user_id=org.users["admin"], scopes="admin"
        )
        return {"service": service, "admin_only": admin_only}
    finally:
        await engine.dispose()


async def test_every_route_admits_exactly_the_roles_the_readme_names(
    world: tuple[str, dict[str, str], Org, Org],
) -> None:
    base, callers, _, _ = world
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        document = (await c.get("/openapi.json")).json()
        served = {
            (method.upper(), path)
            for path, operations in document["paths"].items()
            for method in operations
            if method in {"get", "post", "put", "patch", "delete"}
        }
        assert served - set(ROUTES) == set(), "routes without a row in ROUTES: say who may call them"
        wrong: list[str] = []
        for (method, path), kind in sorted(ROUTES.items()):
            for caller in CALLERS:
                headers = auth(callers[caller]) if caller != "none" else {}
                body = BODIES.get((method, path), {} if method in {"POST", "PUT", "PATCH"} else None)
                query = QUERIES.get((method, path))
                r = await c.request(method, _concrete(path), json=body, params=query, headers=headers)
                if caller in ADMITS[kind]:
                    ok = r.status_code not in (401, 403)
                elif caller == "none":
                    ok = r.status_code == 401
                else:
                    ok = r.status_code == 403
                if not ok:
                    wrong.append(f"{caller:<10} {method} {path}: {r.status_code} {r.text[:120]}")
    assert wrong == [], "\n".join(wrong)


async def test_the_websocket_and_geminis_key_parameter_follow_the_same_table(
    world: tuple[str, dict[str, str], Org, Org],
) -> None:
    base, callers, _, _ = world
    ws = base.replace("http://", "ws://") + "/v1/responses"
    refused: dict[str, int] = {}
    for caller in ("member", "auditor", "billing", "admin_only"):
        try:
            async with connect(ws, additional_headers=auth(callers[caller]), open_timeout=5):
                refused[caller] = 0
        except InvalidStatus as exc:
            refused[caller] = exc.response.status_code
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        by_query = {
            caller: (await c.get("/v1beta/models", params={"key": callers[caller]})).status_code
            for caller in ("member", "auditor")
        }
        # `?key=` is Gemini's form only: an OpenAI route does not read it
        openai_face = await c.get("/v1/models", params={"key": callers["member"]})
    assert refused == {"member": 0, "auditor": 403, "billing": 403, "admin_only": 403}
    assert by_query == {"member": 200, "auditor": 403}
    assert openai_face.status_code == 401


async def test_revoked_expired_and_rotated_keys(world: tuple[str, dict[str, str], Org, Org]) -> None:
    base, callers, _, _ = world
    admin = auth(callers["admin"])
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        revoked, in_grace = [
            (
                await c.post("/v1/admin/keys", json={"name": f"k{i}", "scopes": ["inference"]}, headers=admin)
            ).json()
            for i in range(2)
        ]
        await c.delete(f"/v1/admin/keys/{revoked['id']}", headers=admin)
        rotated = await c.post(
            f"/v1/admin/keys/{in_grace['id']}/rotate", json={"grace_s": 600}, headers=admin
        )
        answers = {
            "revoked": (await c.get("/v1/models", headers=auth(revoked["key"]))).status_code,
            "old key in its grace": (await c.get("/v1/models", headers=auth(in_grace["key"]))).status_code,
            "its successor": (await c.get("/v1/models", headers=auth(rotated.json()["key"]))).status_code,
        }
        brief = await c.post(
            "/v1/admin/keys",
            json={"name": "brief", "scopes": ["inference"], "expires_in_s": 1},
            headers=admin,
        )
        await asyncio.sleep(1.2)
        answers["expired"] = (await c.get("/v1/models", headers=auth(brief.json()["key"]))).status_code
        # A grace period never outlives the key: rotating a key that expires in 1 s with a day's grace.
        short = await c.post(
            "/v1/admin/keys",
            json={"name": "short", "scopes": ["inference"], "expires_in_s": 1},
            headers=admin,
        )
        graced = await c.post(
            f"/v1/admin/keys/{short.json()['id']}/rotate", json={"grace_s": 86400}, headers=admin
        )
        old = (await c.get(f"/v1/admin/keys/{short.json()['id']}", headers=admin)).json()
        await asyncio.sleep(1.2)
        answers["expired, rotated with grace"] = (
            await c.get("/v1/models", headers=auth(short.json()["key"]))
        ).status_code
    assert answers == {
        "revoked": 401,
        "old key in its grace": 200,
        "its successor": 200,
        "expired": 401,
        "expired, rotated with grace": 401,
    }
    assert graced.status_code == 201
    expires = datetime.fromisoformat(old["expires_at"]).replace(tzinfo=UTC)
    assert expires <= datetime.now(UTC) + timedelta(seconds=1)


async def test_a_key_cannot_grant_more_than_it_holds(world: tuple[str, dict[str, str], Org, Org]) -> None:
    """A key with the `admin` scope only (a provisioning script's) manages keys, but neither mints nor
    rotates its way to a key that calls models or reads the ledger or usage."""
    base, callers, acme, _ = world
    narrow = auth(callers["admin_only"])
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        default = await c.post("/v1/admin/keys", json={"name": "mine"}, headers=narrow)
        asked = await c.post("/v1/admin/keys", json={"name": "mine", "scopes": ["inference"]}, headers=narrow)
        for_member = await c.post(
            "/v1/admin/keys", json={"name": "m", "user_id": acme.users["member"]}, headers=narrow
        )
        keys = (await c.get("/v1/admin/keys", headers=narrow)).json()
        full = next(k for k in keys if k["name"] == "admin")
        rotated = await c.post(f"/v1/admin/keys/{full['id']}/rotate", json={}, headers=narrow)
        same = await c.post(
            "/v1/admin/keys", json={"name": "also narrow", "scopes": ["admin"]}, headers=narrow
        )
        still = await c.get("/v1/models", headers=auth(callers["admin"]))
    assert default.status_code == 201 and default.json()["scopes"] == ["admin"], default.text
    for refused in (asked, for_member, rotated):
        assert (refused.status_code, refused.json()["error"]["type"]) == (403, "permission_error"), (
            refused.text
        )
    assert "inference" in asked.json()["error"]["message"]
    assert same.status_code == 201 and same.json()["scopes"] == ["admin"]
    assert still.status_code == 200  # the refused rotation left the full key alone


async def test_another_organisations_objects_are_not_found(
    world: tuple[str, dict[str, str], Org, Org],
) -> None:
    base, callers, _, globex = world
    theirs = auth(globex.keys["member"])
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        conversation = (await c.post("/v1/conversations", json={}, headers=theirs)).json()["id"]
        upload = await c.post(
            "/v1/files",
            files={
                "file": (
                    "in.jsonl",
                    b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions",'
                    b'"body":{"model":"auto","messages":[{"role":"user","content":"hi"}]}}\n',
                )
            },
            data={"purpose": "batch"},
            headers=theirs,
        )
        file_id = upload.json()["id"]
        asks = [
            ("GET", f"/v1/conversations/{conversation}"),
            ("GET", f"/v1/conversations/{conversation}/items"),
            ("DELETE", f"/v1/conversations/{conversation}"),
            ("GET", f"/v1/files/{file_id}"),
            ("GET", f"/v1/files/{file_id}/content"),
            ("DELETE", f"/v1/files/{file_id}"),
        ]
        mine = auth(callers["member"])
        answers = [(m, p, await c.request(m, p, headers=mine)) for m, p in asks]
        batch = await c.post(
            "/v1/batches",
            json={"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
            headers=mine,
        )
        kept = await c.get(f"/v1/conversations/{conversation}", headers=theirs)
    for method, path, r in answers:
        assert r.status_code == 404, (method, path, r.text)
        assert "custom_id" not in r.text and r.json()["error"]["type"] == "invalid_request_error"
    assert batch.status_code == 404, batch.text
    assert kept.status_code == 200


async def test_a_keys_model_list_holds_on_every_route_that_names_a_model(
    world: tuple[str, dict[str, str], Org, Org],
) -> None:
    base, callers, _, _ = world
    other = "openai/gpt-4o-mini"
    turn = [{"role": "user", "content": "hi"}]
    gemini = {"contents": [{"parts": [{"text": "hi"}]}]}
    asks: list[tuple[str, str, object]] = [
        ("POST", "/v1/chat/completions", {"model": other, "messages": turn}),
        ("POST", "/v1/completions", {"model": other, "prompt": "hi"}),
        ("POST", "/v1/responses", {"model": other, "input": "hi"}),
        ("POST", "/v1/responses/input_tokens", {"model": other, "input": "hi"}),
        ("POST", "/v1/messages", {"model": other, "max_tokens": 5, "messages": turn}),
        ("POST", "/v1/messages/count_tokens", {"model": other, "messages": turn}),
        ("POST", "/v1/embeddings", {"model": other, "input": "hi"}),
        ("POST", "/v1/tasks", {"model": other, "messages": turn}),
        ("POST", f"/v1beta/models/{other}:generateContent", gemini),
        ("POST", f"/v1beta/models/{other}:streamGenerateContent", gemini),
        ("POST", f"/v1beta/models/{other}:countTokens", gemini),
        ("POST", f"/v1beta/models/{other}:embedContent", {"content": {"parts": [{"text": "hi"}]}}),
        ("POST", f"/v1/models/{other}:generateContent", gemini),
    ]
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        made = await c.post(
            "/v1/admin/keys", json={"name": "auto only", "models": ["auto"]}, headers=auth(callers["admin"])
        )
        narrow = made.json()["key"]
        answers = {path: await c.request(m, path, json=body, headers=auth(narrow)) for m, path, body in asks}
        shown = await c.get(f"/v1/models/{other}", headers=auth(narrow))
    wrong = {p: (r.status_code, r.text[:160]) for p, r in answers.items() if r.status_code != 403}
    assert wrong == {}
    for r in answers.values():
        assert "model_not_allowed" in r.text
    assert shown.status_code == 403
    refused: list[dict[str, object]] = []
    async with connect(
        base.replace("http://", "ws://") + "/v1/responses", additional_headers=auth(narrow)
    ) as ws:
        await ws.send(json.dumps({"type": "response.create", "model": other, "input": "hi"}))
        refused.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    assert refused[0]["type"] == "error" and "model_not_allowed" in json.dumps(refused[0])
