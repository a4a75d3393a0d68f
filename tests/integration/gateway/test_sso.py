"""OIDC single sign-on against a local identity provider over real HTTP (discovery + JWKS, keys generated
here): good RS256, ES256 and EdDSA tokens work end to end as the same principal an API key gives; tokens
with the wrong issuer or audience, `alg=none`, HS256 made with the public key, expired, not yet valid,
badly signed or from an unknown key are each refused with a clear 401; a rotated key is fetched on
first sight of its `kid`, at a bounded rate."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import nats
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from switchyard.cli.processes import NatsServer, free_port
from switchyard.common import subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import decode
from switchyard.common.events import AdminActionRecorded, AuthFailureRecorded
from switchyard.gateway.access.oidc import OidcConfig, OidcVerifier, TokenRejected
from switchyard.gateway.access.oidc_keys import Jwks, JwksUnavailable
from switchyard.gateway.db import migrations
from switchyard.gateway.tenants import create_tenant, create_user
from tests.integration.gateway.harness import Answerer, Org, auth, gateway_stack, make_org, stored_events

pytestmark = pytest.mark.integration

AUDIENCE = "switchyard-test"


class IdP:
    """An identity provider's public side: the discovery document and the JWKS, changeable at run time."""

    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.private: dict[str, Any] = {}
        self.published: dict[str, dict[str, Any]] = {}
        self.jwks_requests = 0
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": idp.issuer, "jwks_uri": f"{idp.issuer}/jwks"}
                elif self.path == "/jwks":
                    idp.jwks_requests += 1
                    body = {"keys": list(idp.published.values())}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, kid: str, kind: str = "rsa", *, publish: bool = True) -> None:
        if kind == "rsa":
            key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        elif kind == "ec":
            key = ec.generate_private_key(ec.SECP256R1())
            jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        else:
            key = ed25519.Ed25519PrivateKey.generate()
            jwk = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
        self.private[kid] = key
        if publish:
            self.published[kid] = {**jwk, "kid": kid, "use": "sig"}

    def token(
        self, kid: str, alg: str = "RS256", *, key: Any = None, as_kid: str | None = None, **claims: Any
    ) -> str:
        now = int(time.time())
        sub = f"sub-{claims['email']}" if "email" in claims else "u-123"  # one account per address
        body = {"iss": self.issuer, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.private[kid], algorithm=alg, headers={"kid": as_kid or kid})

    def stop(self) -> None:
        self.server.shutdown()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None = None) -> str:
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = _b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest()) if secret else ""
    return f"{signing}.{signature}"


# the nats-server, the gateway, the identity provider, acme, globex, and umbrella with its platform operator
World = tuple[NatsServer, str, IdP, Org, Org, tuple[Org, Org]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("sso")
    idp = IdP()
    idp.add("rsa-1")
    idp.add("ec-1", "ec")
    idp.add("ed-1", "ed")
    env = {
        "SWITCHYARD_OIDC_ISSUER": idp.issuer,  # the JWKS URL comes from discovery
        "SWITCHYARD_OIDC_AUDIENCE": AUDIENCE,
        "SWITCHYARD_OIDC_CREATE_USERS": "true",
        "SWITCHYARD_OIDC_JWKS_MIN_REFRESH_S": "1",
    }
    try:
        with gateway_stack(tmp, env=env) as (server, db_url, (base,)):
            acme = asyncio.run(make_org(db_url, "acme", roles=("admin",), plan="pro"))
            globex = asyncio.run(make_org(db_url, "globex", roles=("admin",)))
            umbrella = asyncio.run(make_org(db_url, "umbrella", roles=("admin",)))
            ops = asyncio.run(make_org(db_url, "ops", roles=("admin",), platform=True))
            yield server, base, idp, acme, globex, (umbrella, ops)
    finally:
        idp.stop()


@pytest.fixture
async def answerer(world: World) -> AsyncIterator[Answerer]:
    me = await Answerer.start(world[0].url)
    yield me
    await me.close()


async def test_good_tokens_work_end_to_end_as_the_same_principal(world: World, answerer: Answerer) -> None:
    _, base, idp, acme, _, _ = world
    member = {"org": "acme", "email": "new.person@acme.test", "role": "member"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        for kid, alg in (("rsa-1", "RS256"), ("ec-1", "ES256"), ("ed-1", "EdDSA")):
            r = await c.get("/v1/models", headers=auth(idp.token(kid, alg, **member)))
            assert r.status_code == 200, (alg, r.text)
        chat = await c.post(
            "/v1/chat/completions",
            headers=auth(idp.token("rsa-1", **member)),
            json={"model": "auto", "messages": [{"role": "user", "content": "Capital of France?"}]},
        )
        # The member's token has no admin scope; the admin's (matched to the existing admin user) does.
        forbidden = await c.get("/v1/admin/users", headers=auth(idp.token("ec-1", "ES256", **member)))
        admin_token = idp.token("rsa-1", org="acme", email="admin@acme.test", role=["staff", "admin"])
        users = await c.get("/v1/admin/users", headers=auth(admin_token))
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"] == "Paris"
    assert forbidden.status_code == 403
    assert users.status_code == 200
    by_email = {u["email"]: u for u in users.json()}
    assert set(by_email) == {"admin@acme.test", "new.person@acme.test"}  # created on first sight, in acme
    assert by_email["new.person@acme.test"]["role"] == "member"
    task = answerer.seen[-1]
    assert (task.tenant_id, task.user_id) == (acme.id, by_email["new.person@acme.test"]["id"])
    assert task.api_key_id == "jwt:sub-new.person@acme.test"

    # The user created on first sight is recorded as an admin action by the token's subject.
    nc = await nats.connect(world[0].url)
    sub = await nc.jetstream().subscribe(subjects.ADMIN_ACTION, ordered_consumer=True)
    created = []
    while True:
        try:
            msg = await sub.next_msg(timeout=1.0)
        except nats.errors.TimeoutError:
            break
        event = decode(msg.data, (AdminActionRecorded,))[1]
        assert isinstance(event, AdminActionRecorded)
        created.append((event.action, event.target_id, event.actor_key_id, event.changes.get("via")))
    await nc.close()
    newcomer = by_email["new.person@acme.test"]["id"]
    assert ("user.created", newcomer, "jwt:sub-new.person@acme.test", "oidc") in created


async def test_bad_tokens_are_each_refused_with_a_clear_401(
    world: World,
) -> None:
    server, base, idp, _, _, _ = world
    claims = {"org": "acme", "email": "x@acme.test"}
    now = int(time.time())
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        idp.private["rsa-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    body = {"iss": idp.issuer, "aud": AUDIENCE, "sub": "u-1", "exp": now + 300, **claims}
    cases = {
        "token_issuer_invalid": idp.token("rsa-1", iss="https://evil.example", **claims),
        "token_audience_invalid": idp.token("rsa-1", aud="someone-else", **claims),
        "token_expired": idp.token("rsa-1", exp=now - 120, iat=now - 600, **claims),
        "token_not_yet_valid": idp.token("rsa-1", nbf=now + 600, **claims),
        "token_signature_invalid": idp.token("rsa-1", key=stranger, **claims),
        "token_key_unknown": idp.token("rsa-404", key=stranger, **claims),
        "token_claims_invalid": idp.token("rsa-1", exp=None, **claims),
        "unknown_organization": idp.token("rsa-1", org="initech", email="x@initech.test"),
        "token_role_invalid": idp.token("rsa-1", role="superuser", **claims),
        # an address the provider did not verify names no one: not acme's admin, whose role it would take
        "token_email_unverified": idp.token(
            "rsa-1", org="acme", email="admin@acme.test", email_verified=False
        ),
        "invalid_token": "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
    }
    algorithm_cases = [
        _unsigned({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, body),
        _unsigned({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, body, secret=public_pem),
        idp.token("ec-1", "ES384", key=ec.generate_private_key(ec.SECP384R1()), **claims),
    ]
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        for code, token in cases.items():
            r = await c.get("/v1/models", headers=auth(token))
            assert (r.status_code, r.json()["error"]["code"]) == (401, code), r.text
            assert r.json()["error"]["type"] == "authentication_error"
        for token in algorithm_cases:
            r = await c.get("/v1/models", headers=auth(token))
            assert (r.status_code, r.json()["error"]["code"]) == (401, "token_algorithm_not_allowed"), r.text

    nc = await nats.connect(server.url)
    sub = await nc.jetstream().subscribe(subjects.SECURITY_AUTH_FAILURE, ordered_consumer=True)
    raw = b""
    reasons = []
    while True:
        try:
            msg = await sub.next_msg(timeout=1.0)
        except nats.errors.TimeoutError:
            break
        raw += msg.data
        event = decode(msg.data, (AuthFailureRecorded,))[1]
        assert isinstance(event, AuthFailureRecorded)
        reasons.append((event.credential, event.reason))
    await nc.close()
    expected = [("jwt", code) for code in cases] + [("jwt", "token_algorithm_not_allowed")] * 3
    assert expected == reasons[-len(expected) :]
    for token in [*cases.values(), *algorithm_cases]:
        signature = token.split(".")[-1]
        assert token.encode() not in raw and (not signature or signature.encode() not in raw)


async def test_a_disabled_users_tokens_stop_working_at_once(
    world: World,
) -> None:
    _, base, idp, acme, _, _ = world
    token = idp.token("ec-1", "ES256", org="acme", email="leaver@acme.test", role="member")
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        assert (await c.get("/v1/models", headers=auth(token))).status_code == 200  # now cached
        users = (await c.get("/v1/admin/users", headers=auth(acme.keys["admin"]))).json()
        leaver = next(u for u in users if u["email"] == "leaver@acme.test")
        disabled = await c.delete(f"/v1/admin/users/{leaver['id']}", headers=auth(acme.keys["admin"]))
        assert disabled.status_code == 200
        await asyncio.sleep(0.2)
        after = await c.get("/v1/models", headers=auth(token))
    assert (after.status_code, after.json()["error"]["code"]) == (401, "user_disabled")


async def test_a_rotated_key_is_fetched_on_first_sight_at_a_bounded_rate(
    world: World,
) -> None:
    _, base, idp, _, _, _ = world
    claims = {"org": "globex", "email": "admin@globex.test"}
    idp.add("rsa-2", publish=False)
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        await asyncio.sleep(1.1)  # past the refresh interval of the earlier tests' fetches
        fetched = idp.jwks_requests
        early = await c.get("/v1/models", headers=auth(idp.token("rsa-2", **claims)))
        assert (early.status_code, early.json()["error"]["code"]) == (401, "token_key_unknown")
        assert idp.jwks_requests == fetched + 1  # it looked, once
        # Made-up key ids do not make the gateway hammer the provider: at most one fetch per second.
        for i in range(20):
            await c.get("/v1/models", headers=auth(idp.token("rsa-2", as_kid=f"made-up-{i}", **claims)))
        assert idp.jwks_requests <= fetched + 2
        # The provider rotates: rsa-2 in, rsa-1 out.
        idp.published["rsa-2"] = {
            **RSAAlgorithm.to_jwk(idp.private["rsa-2"].public_key(), as_dict=True),
            "kid": "rsa-2",
            "use": "sig",
        }
        del idp.published["rsa-1"]
        await asyncio.sleep(1.1)
        rotated = await c.get("/v1/models", headers=auth(idp.token("rsa-2", **claims)))
        old = await c.get("/v1/models", headers=auth(idp.token("rsa-1", **claims)))
    assert rotated.status_code == 200, rotated.text
    assert (old.status_code, old.json()["error"]["code"]) == (401, "token_key_unknown")


async def test_held_keys_outlive_an_identity_provider_outage() -> None:
    idp = IdP()
    idp.add("k1")
    jwks = Jwks(issuer=idp.issuer, url=f"{idp.issuer}/jwks", max_age_s=0.2, min_refresh_s=0.1)
    try:
        assert (await jwks.key("k1")) is not None and jwks.fetches == 1
    finally:
        idp.stop()
        idp.server.server_close()
    await asyncio.sleep(0.3)  # stale now, and the provider is gone: the refresh fails, k1 stays in use
    assert (await jwks.key("k1")) is not None and jwks.fetches == 1
    assert await jwks.key("k2") is None
    nobody = Jwks(issuer="http://127.0.0.1:9", min_refresh_s=60)
    with pytest.raises(JwksUnavailable):
        await nobody.key("k1")


async def test_an_erased_organisation_gets_no_user_on_first_sight(world: World) -> None:
    """Erasure disables every user and revokes every key: nobody may act for the organisation any more,
    a newcomer its identity provider still names included."""
    _, base, idp, _, _, (umbrella, ops) = world
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        before = idp.token("ec-1", "ES256", org="umbrella", email="early@umbrella.test", role="member")
        assert (await c.get("/v1/models", headers=auth(before))).status_code == 200
        erased = await c.post(f"/v1/admin/organizations/{umbrella.id}/erase", headers=auth(ops.keys["admin"]))
        assert erased.status_code == 200, erased.text
        newcomer = idp.token("ec-1", "ES256", org="umbrella", email="late@umbrella.test", role="admin")
        after = await c.get("/v1/models", headers=auth(newcomer))
        known = await c.get("/v1/models", headers=auth(before))
        users = await c.get("/v1/admin/users", headers=auth(newcomer))
    assert (after.status_code, after.json()["error"]["code"]) == (401, "organization_closed"), after.text
    assert (known.status_code, known.json()["error"]["code"]) == (401, "user_disabled")
    assert users.status_code == 401


async def test_a_user_is_bound_to_their_identity_provider_account(world: World, answerer: Answerer) -> None:
    """Email links a user to an identity-provider account once, at its first login; from then on the
    account (issuer and subject) is the user. Another account that takes the address (renamed at the
    provider, as in Azure AD's nOAuth) is refused, not logged in as them; the user's own account keeps
    working under a new address; an admin unlinks a user whose account was replaced."""
    server, base, idp, acme, _, _ = world
    admin = auth(acme.keys["admin"])
    ana = {"org": "acme", "email": "ana@acme.test", "role": "member"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        bob = (await c.post("/v1/admin/users", json={"email": "bob@acme.test"}, headers=admin)).json()
        first = await c.get("/v1/models", headers=auth(idp.token("ec-1", "ES256", sub="acct-ana", **ana)))
        linked = await c.get(
            "/v1/models",
            headers=auth(idp.token("ec-1", "ES256", sub="acct-bob", **{**ana, "email": "bob@acme.test"})),
        )
        taken = {
            who: await c.get(
                "/v1/models",
                headers=auth(idp.token("ec-1", "ES256", sub="acct-mallory", **{**ana, "email": email})),
            )
            for who, email in (("ana", "ana@acme.test"), ("bob", "BOB@acme.test"))
        }
        renamed = await c.post(
            "/v1/chat/completions",
            headers=auth(idp.token("ec-1", "ES256", sub="acct-ana", **{**ana, "email": "ana.b@acme.test"})),
            json={"model": "auto", "messages": [{"role": "user", "content": "Capital of France?"}]},
        )
        # The same account naming another organisation: not a second user there.
        elsewhere = await c.get(
            "/v1/models", headers=auth(idp.token("ec-1", "ES256", sub="acct-ana", **{**ana, "org": "globex"}))
        )
        users = {u["email"]: u for u in (await c.get("/v1/admin/users", headers=admin)).json()}
        # Bob's account was deleted and made again at the provider: a new subject. An admin unlinks him.
        replaced = idp.token("ec-1", "ES256", sub="acct-bob-2", **{**ana, "email": "bob@acme.test"})
        before = await c.get("/v1/models", headers=auth(replaced))
        unlinked = await c.patch(f"/v1/admin/users/{bob['id']}", json={"oidc_subject": None}, headers=admin)
        after = await c.get("/v1/models", headers=auth(replaced))
        relinked = (await c.get(f"/v1/admin/users/{bob['id']}", headers=admin)).json()
    assert first.status_code == 200 and linked.status_code == 200, (first.text, linked.text)
    for who, r in taken.items():
        assert (r.status_code, r.json()["error"]["code"]) == (401, "token_subject_mismatch"), (who, r.text)
    assert renamed.status_code == 200, renamed.text
    assert (elsewhere.status_code, elsewhere.json()["error"]["code"]) == (401, "token_subject_mismatch")
    assert "ana.b@acme.test" not in users  # the same user, not a second one
    assert (users["ana@acme.test"]["oidc_issuer"], users["ana@acme.test"]["oidc_subject"]) == (
        idp.issuer,
        "acct-ana",
    )
    assert answerer.seen[-1].user_id == users["ana@acme.test"]["id"]
    assert users["bob@acme.test"]["id"] == bob["id"] and users["bob@acme.test"]["oidc_subject"] == "acct-bob"
    assert (before.status_code, before.json()["error"]["code"]) == (401, "token_subject_mismatch")
    assert unlinked.status_code == 200 and unlinked.json()["oidc_subject"] is None
    assert after.status_code == 200 and relinked["oidc_subject"] == "acct-bob-2"

    events, _ = await stored_events(server.url, subjects.ADMIN_ACTION, AdminActionRecorded)
    links = [
        (e.target_id, e.actor_key_id, e.changes.get("oidc_subject"))
        for e in events
        if e.changes.get("via") == "oidc"
    ]
    assert (bob["id"], "jwt:acct-bob", "acct-bob") in links and (
        bob["id"],
        "jwt:acct-bob-2",
        "acct-bob-2",
    ) in links


async def test_linking_can_require_an_address_the_provider_verified(tmp_path: Path) -> None:
    """With SWITCHYARD_OIDC_LINK_VERIFIED_ONLY, a first login links an existing user only when the token
    says `email_verified: true`: an unverified address takes no one over before their own first login.
    Creating a user is not linking (no one is taken over)."""
    idp = IdP()
    idp.add("k1")
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'sso.db'}"
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    try:
        org = await create_tenant(sessions, name="acme")
        boss = await create_user(sessions, tenant_id=org.id, email="boss@acme.test", role="admin")
        config = OidcConfig(issuer=idp.issuer, audience=AUDIENCE, create_users=True, link_verified_only=True)
        sso = OidcVerifier(config, Jwks(issuer=idp.issuer, url=f"{idp.issuer}/jwks"), sessions)
        with pytest.raises(TokenRejected) as unverified:
            await sso.verify(idp.token("k1", sub="acct-eve", org="acme", email="boss@acme.test"))
        newcomer = await sso.verify(idp.token("k1", sub="acct-new", org="acme", email="new@acme.test"))
        linked = await sso.verify(
            idp.token("k1", sub="acct-boss", org="acme", email="boss@acme.test", email_verified=True)
        )
    finally:
        await engine.dispose()
        idp.stop()
    assert unverified.value.code == "token_email_unverified"
    assert newcomer.user_id != boss.id and newcomer.role == "member"
    assert linked.user_id == boss.id
