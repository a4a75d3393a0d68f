"""Cross-tenant attempts, SQL injection and path traversal on every endpoint of the OpenAPI document the
gateway serves (so a new endpoint is covered the day it appears): the attacker's organisation, holding an
admin key of its own, names the victim's task, user, key and webhook in every path, query and body
parameter. Nothing of the victim's may come back or change; no request may cause a 5xx.

(JWT refusals and API-key guessing throttling belong to the OIDC work in the gateway and are tested there.)
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest

from tests.integration.gateway.harness import auth
from tests.security.conftest import Tenants

pytestmark = pytest.mark.e2e

INJECTIONS = (
    "' OR '1'='1",
    "x' UNION SELECT key_hash, tenant_id FROM api_keys --",
    "../../../../etc/passwd",
    "😀\u0000' --",
)
if os.environ.get("SWITCHYARD_LONG_TESTS") == "1":  # `make fuzz`
    INJECTIONS += (
        "1; DROP TABLE ledger_entries; --",
        '" OR ""="',
        "%27%20OR%201%3D1--",
        "..%2f..%2fetc%2fpasswd",
    )
NOT_FOUND_OR_FORBIDDEN = {400, 401, 403, 404, 405, 409, 410, 422}
INFERENCE = {"/v1/chat/completions", "/v1/messages", "/v1/tasks"}
PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
# Path parameters that name what every organisation shares, not a tenant's resource (a model, an unserved
# Responses operation, a Gemini model and method): filled with this value, and the answer only has to leak
# nothing.
SHARED = {"model": "auto", "name": "compact", "target": "auto:countTokens"}


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def body_for(doc: dict[str, Any], op: dict[str, Any], ids: dict[str, str], fill: str | None = None) -> Any:
    """A body for `op`: every id-like property names the victim's resource, other required properties get
    a plain value of their type (or `fill`, the injection string under test)."""
    content = (op.get("requestBody") or {}).get("content", {}).get("application/json")
    if content is None:
        return None
    schema = _resolve(doc, content.get("schema", {}))
    body: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        prop = _resolve(doc, prop)
        kind = prop.get("type") or next((p.get("type") for p in prop.get("anyOf", []) if p.get("type")), None)
        if name in ids:
            body[name] = ids[name]
        elif name in schema.get("required", []) or fill is not None:
            default = {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
            body[name] = fill if (fill is not None and kind == "string") else default.get(kind or "", "x")
    if "model" in schema.get("properties", {}):
        body["model"] = "auto"
    if "messages" in schema.get("properties", {}):
        body["messages"] = [{"role": "user", "content": fill or "hello"}]
    return body


def _victim_markers(t: Tenants) -> list[str]:
    return [t.victim.id, *t.ids.values(), "victim secret plan", "someone@victim.test", "victim-org"]


def _leaks(t: Tenants, response: httpx.Response) -> list[str]:
    """The victim's data in an answer; ids the attacker sent itself may be echoed in an error message."""
    sent = str(response.request.url) + response.request.content.decode(errors="replace")
    return [m for m in _victim_markers(t) if m and m != "wh_missing" and m not in sent and m in response.text]


def _server_error(r: httpx.Response) -> bool:
    """A 5xx other than a provider's failure reported in the error model (502/503/504 with an error type)."""
    if r.status_code < 500:
        return False
    if r.status_code in (502, 503, 504):
        try:
            return not r.json()["error"]["type"]
        except (ValueError, KeyError, TypeError):
            return True
    return True


def test_the_document_lists_the_endpoints_we_attack(tenants: Tenants) -> None:
    paths = {p for _, p, _ in operations(tenants.doc)}
    assert {"/v1/tasks/{task_id}", "/v1/admin/users/{user_id}", "/v1/admin/keys/{key_id}"} <= paths
    params = {p["name"] for _, _, op in operations(tenants.doc) for p in op.get("parameters", [])}
    unknown = {p for _, path, _ in operations(tenants.doc) for p in _path_params(path)} - {
        *tenants.ids,
        *SHARED,
    }
    assert not unknown, f"a path parameter this test cannot fill with a victim's id: {unknown}"
    assert params


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def test_cross_tenant_attempts_on_every_endpoint(tenants: Tenants) -> None:
    t = tenants
    tried, problems = 0, []
    with httpx.Client(base_url=t.stack.base_url, headers=auth(t.attacker.keys["admin"]), timeout=30) as c:
        for method, path, op in operations(t.doc):
            if path in PUBLIC:
                continue
            url = path
            owned = [name for name in _path_params(path) if name not in SHARED]
            for name in _path_params(path):
                url = url.replace("{" + name + "}", SHARED[name] if name in SHARED else t.ids[name])
            query = {
                p["name"]: t.ids[p["name"]]
                for p in op.get("parameters", [])
                if p["in"] == "query" and p["name"] in t.ids
            }
            tried += 1
            try:
                r = _send(c, method, url, params=query, json=body_for(t.doc, op, t.ids))
            except httpx.TransportError as exc:
                problems.append(f"{method} {path}: connection dropped ({type(exc).__name__})")
                continue
            if _server_error(r):
                problems.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
            elif owned and r.status_code not in NOT_FOUND_OR_FORBIDDEN:
                problems.append(f"{method} {path}: {r.status_code} for another organisation's resource")
            elif leaks := _leaks(t, r):
                problems.append(f"{method} {path}: answer shows the victim's {leaks}")
    _verdict(problems)
    # And nothing of the victim's changed.
    with httpx.Client(base_url=t.stack.base_url, headers=auth(t.victim.keys["admin"]), timeout=30) as c:
        assert c.get(f"/v1/tasks/{t.ids['task_id']}").json()["status"] == "completed"
        assert c.get(f"/v1/admin/users/{t.ids['user_id']}").status_code == 200
        key = c.get(f"/v1/admin/keys/{t.ids['key_id']}").json()
        assert not key.get("revoked_at") and key.get("status", "active") == "active", key
        assert c.get("/v1/models").status_code == 200, "the victim's own key still works"
        batch = c.get(f"/v1/batches/{t.ids['batch_id']}").json()
        assert batch["status"] not in ("cancelling", "cancelled"), batch
        message_batch = c.get(f"/v1/messages/batches/{t.ids['message_batch_id']}").json()
        assert not message_batch["cancel_initiated_at"], message_batch  # and not deleted
        assert c.get(f"/v1/responses/{t.ids['response_id']}").status_code == 200, "not deleted"
        items = c.get(f"/v1/conversations/{t.ids['conversation_id']}/items").json()["data"]
        assert [i["id"] for i in items] == [t.ids["item_id"]], "the conversation changed"
    print(f"\n{tried} cross-tenant requests, none answered with the victim's data")


@pytest.mark.parametrize("injection", INJECTIONS)
def test_injection_strings_in_every_parameter(tenants: Tenants, injection: str) -> None:
    t = tenants
    problems = []
    with httpx.Client(base_url=t.stack.base_url, headers=auth(t.attacker.keys["admin"]), timeout=30) as c:
        for method, path, op in operations(t.doc):
            params = op.get("parameters", [])
            # Prompts are opaque text to the platform (never SQL): inference bodies are left out.
            inference = "messages" in json.dumps(op.get("requestBody") or {}) or path in INFERENCE
            targets = [p for p in params if p["in"] in ("path", "query")] + (
                [{"in": "body", "name": "*"}] if op.get("requestBody") and not inference else []
            )
            for target in targets:
                url = path
                for name in _path_params(path):
                    url = url.replace("{" + name + "}", t.ids.get(name, "x"))
                query: dict[str, str] = {}
                body = body_for(t.doc, op, {}) if op.get("requestBody") else None
                if target["in"] == "path":
                    url = url.replace(t.ids.get(target["name"], "x"), injection.replace("/", "%2F"), 1)
                elif target["in"] == "query":
                    query[target["name"]] = injection
                else:
                    body = body_for(t.doc, op, {}, fill=injection)
                try:
                    r = _send(c, method, url, params=query, json=body)
                except httpx.InvalidURL:
                    continue
                except httpx.TransportError as exc:
                    problems.append(
                        f"{method} {path} {target['name']}: connection dropped ({type(exc).__name__})"
                    )
                    continue
                if _server_error(r):
                    problems.append(f"{method} {path} {target['name']}: {r.status_code} {r.text[:200]}")
                elif leaks := _leaks(t, r):
                    problems.append(f"{method} {path} {target['name']}: shows the victim's {leaks}")
                elif "root:x:0:0" in r.text:
                    problems.append(f"{method} {path} {target['name']}: served /etc/passwd")
    _verdict(problems)


def _send(c: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One retry on a dropped connection: a keep-alive connection the server closed between two requests
    is not a defect; a request that drops the connection twice is."""
    try:
        return c.request(method, url, **kwargs)
    except httpx.TransportError:
        return c.request(method, url, headers={"connection": "close"}, **kwargs)


def _verdict(problems: list[str]) -> None:
    assert not problems, problems
