"""Key guessing is rate limited: failures from one client address, or against one key prefix, are
counted across two gateway replicas (JetStream KV) and then answered 429 with Retry-After on both; every
failure is an event for the audit ledger that never carries the key."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.events import AuthFailureRecorded
from switchyard.gateway import keys
from tests.integration.gateway.harness import Org, auth, gateway_stack, make_org, stored_events

pytestmark = pytest.mark.integration

WINDOW_S = 3600
CLIENT_FAILURES = 6
PREFIX_FAILURES = 4


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, list[str], Org]]:
    # Failures are counted in fixed windows: do not start a few seconds before one ends.
    left = WINDOW_S - time.time() % WINDOW_S
    if left < 30:
        time.sleep(left + 0.5)
    tmp = tmp_path_factory.mktemp("lockout")
    env = {
        "SWITCHYARD_AUTH_LOCKOUT_WINDOW_S": str(WINDOW_S),
        "SWITCHYARD_AUTH_LOCKOUT_CLIENT_FAILURES": str(CLIENT_FAILURES),
        "SWITCHYARD_AUTH_LOCKOUT_PREFIX_FAILURES": str(PREFIX_FAILURES),
    }
    with gateway_stack(tmp, count=2, env=env) as (server, db_url, bases):
        org = asyncio.run(make_org(db_url, "acme", roles=("member", "admin")))
        yield server, bases, org


def _from(address: str, key: str | None = None) -> dict[str, str]:
    """The client address as a trusted proxy on loopback reports it (uvicorn's proxy headers)."""
    return {"x-forwarded-for": address, **(auth(key) if key else {})}


def _guess() -> str:
    return keys.generate()[0]


async def _failures(url: str) -> tuple[list[AuthFailureRecorded], bytes]:
    return await stored_events(url, subjects.SECURITY_AUTH_FAILURE, AuthFailureRecorded)


async def test_a_guessing_client_is_throttled_on_every_replica(
    world: tuple[NatsServer, list[str], Org],
) -> None:
    server, bases, org = world
    guesses = [_guess() for _ in range(CLIENT_FAILURES)]
    async with httpx.AsyncClient(timeout=10) as c:
        for i, guess in enumerate(guesses):  # alternately on both replicas
            r = await c.get(f"{bases[i % 2]}/v1/models", headers=_from("10.0.0.1", guess))
            assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_api_key")
        await asyncio.sleep(0.2)  # the block travels through KV to the other replica
        throttled = [await c.get(f"{base}/v1/models", headers=_from("10.0.0.1", _guess())) for base in bases]
        # Even a valid key is refused from the blocked address: a guess that succeeded would otherwise show.
        valid = await c.get(f"{bases[1]}/v1/models", headers=_from("10.0.0.1", org.keys["member"]))
        elsewhere = await c.get(f"{bases[1]}/v1/models", headers=_from("10.0.0.2", org.keys["member"]))
        missing = await c.post(f"{bases[0]}/v1/chat/completions", headers=_from("10.0.0.1"), json={})
    for r in (*throttled, valid, missing):
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "too_many_auth_failures"
        assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
        assert 1 <= int(r.headers["retry-after"]) <= WINDOW_S
    assert elsewhere.status_code == 200

    seen, raw = await _failures(server.url)
    mine = [e for e in seen if e.client == "10.0.0.1"]
    assert [e.throttled for e in mine][:CLIENT_FAILURES] == [False] * CLIENT_FAILURES
    assert all(e.reason == "invalid_api_key" and e.credential == "api_key" for e in mine[:CLIENT_FAILURES])
    assert {e.key_prefix for e in mine[:CLIENT_FAILURES]} == {keys.parse_prefix(g) for g in guesses}
    # One throttled event per block and replica, not one per refused request.
    assert 1 <= sum(e.throttled for e in mine) <= 2
    for secret in (*guesses, org.keys["member"]):
        assert secret.encode() not in raw
        assert secret.split("_")[2].encode() not in raw


async def test_guessing_one_keys_secret_blocks_its_prefix(world: tuple[NatsServer, list[str], Org]) -> None:
    _, bases, org = world
    real = org.keys["admin"]
    prefix = keys.parse_prefix(real)
    async with httpx.AsyncClient(timeout=10) as c:
        for i in range(PREFIX_FAILURES):  # from as many addresses: only the prefix ties them together
            wrong = f"sy_{prefix}_{secrets.token_hex(16)}"
            r = await c.get(f"{bases[i % 2]}/v1/models", headers=_from(f"10.0.1.{i + 1}", wrong))
            assert r.status_code == 401
        await asyncio.sleep(0.2)
        blocked = [
            await c.get(
                f"{base}/v1/models", headers=_from("10.0.1.98", f"sy_{prefix}_{secrets.token_hex(16)}")
            )
            for base in bases
        ]
        # The real key keeps working: anyone who saw its prefix (a listing, a log, these events) could
        # otherwise lock its tenant out with 20 requests a window, from anywhere.
        real_key = [await c.get(f"{base}/v1/models", headers=_from("10.0.1.99", real)) for base in bases]
        other_key = await c.get(f"{bases[0]}/v1/models", headers=_from("10.0.1.99", org.keys["member"]))
    for r in blocked:
        assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_auth_failures"), r.text
        assert "prefix" in r.json()["error"]["message"]
    assert [r.status_code for r in real_key] == [200, 200]
    assert other_key.status_code == 200


async def test_an_ipv6_client_is_counted_by_its_64_network(world: tuple[NatsServer, list[str], Org]) -> None:
    """One subscriber gets a /64 (2^64 addresses): counted per address, a guesser would never be blocked.
    Failures from any addresses of one /64 add up; another /64 is someone else."""
    _, bases, org = world
    async with httpx.AsyncClient(timeout=10) as c:
        for i in range(CLIENT_FAILURES):
            r = await c.get(f"{bases[i % 2]}/v1/models", headers=_from(f"2001:db8:0:7::{i + 1:x}", _guess()))
            assert r.status_code == 401, r.text
        await asyncio.sleep(0.2)
        same_64 = [
            await c.get(f"{base}/v1/models", headers=_from("2001:db8:0:7:ffff:1:2:3", org.keys["member"]))
            for base in bases
        ]
        next_64 = await c.get(f"{bases[0]}/v1/models", headers=_from("2001:db8:0:8::1", org.keys["member"]))
    assert [r.status_code for r in same_64] == [429, 429], same_64[0].text
    assert next_64.status_code == 200
