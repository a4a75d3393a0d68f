"""Browser clients (CORS): off by default; with `SWITCHYARD_CORS_ORIGINS`, the listed origins get their
preflights answered before authentication, and the responses' Switchyard headers readable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from switchyard.cli.processes import NatsServer
from tests.integration.gateway.harness import Answerer, Org, auth, gateways, make_org

pytestmark = pytest.mark.integration
APP = "https://app.example.com"
BODY = {"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, x-stainless-lang",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, str, str, Org]]:
    """Two gateways on one bus and database: one with CORS for APP, one as shipped (no CORS)."""
    tmp = tmp_path_factory.mktemp("cors")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    for folder in ("on", "off"):
        (tmp / folder).mkdir()
    try:
        with (
            gateways(server, db_url, tmp / "on", env={"SWITCHYARD_CORS_ORIGINS": f'["{APP}"]'}) as (on,),
            gateways(server, db_url, tmp / "off") as (off,),
        ):
            org = asyncio.run(make_org(db_url, "acme", roles=("member",)))
            yield server, on, off, org
    finally:
        server.stop()


@pytest.fixture
async def answerer(stack: tuple[NatsServer, str, str, Org]) -> AsyncIterator[Answerer]:
    me = await Answerer.start(stack[0].url)
    yield me
    await me.close()


async def test_a_listed_origin_is_answered_and_may_read_our_headers(
    stack: tuple[NatsServer, str, str, Org], answerer: Answerer
) -> None:
    _, on, _, org = stack
    async with httpx.AsyncClient() as c:
        pre = await c.options(f"{on}/v1/chat/completions", headers={"Origin": APP, **PREFLIGHT})
        assert pre.status_code == 200  # no key needed: browsers send none with a preflight
        assert pre.headers["access-control-allow-origin"] == APP
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert "x-stainless-lang" in pre.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in pre.headers
        r = await c.post(
            f"{on}/v1/chat/completions", json=BODY, headers={"Origin": APP, **auth(org.keys["member"])}
        )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Paris"
    assert r.headers["access-control-allow-origin"] == APP
    exposed = r.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed and "x-switchyard-model" in exposed and "retry-after" in exposed
    assert "x-switchyard-cache" in exposed and "x-switchyard-logprobs" in exposed


async def test_other_origins_and_the_default_get_no_cors(
    stack: tuple[NatsServer, str, str, Org], answerer: Answerer
) -> None:
    _, on, off, org = stack
    async with httpx.AsyncClient() as c:
        other = await c.options(
            f"{on}/v1/chat/completions", headers={"Origin": "https://evil.example", **PREFLIGHT}
        )
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        default = await c.options(f"{off}/v1/chat/completions", headers={"Origin": APP, **PREFLIGHT})
        assert default.status_code == 405 and "access-control-allow-origin" not in default.headers
        r = await c.post(
            f"{off}/v1/chat/completions", json=BODY, headers={"Origin": APP, **auth(org.keys["member"])}
        )
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
