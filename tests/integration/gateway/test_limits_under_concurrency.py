"""Rate limits, concurrency quota and budgets hold across three gateway replicas (processes) under many
concurrent clients: the shared counters in JetStream KV admit exactly what the limits allow."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import nats
import orjson
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.leases import SlotTable
from tests.integration.gateway.harness import (
    PRICED_BODY,
    Answerer,
    auth,
    make_org,
    priced_stack,
    wait_for_a_fresh_minute,
)

pytestmark = pytest.mark.integration

ORG_RPM = 150
ORG_CONCURRENT = 60


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, str, list[str]]]:
    env = {
        "SWITCHYARD_LIMIT_ORG_REQUESTS_PER_MIN": str(ORG_RPM),
        "SWITCHYARD_LIMIT_ORG_CONCURRENT_TASKS": str(ORG_CONCURRENT),
        "SWITCHYARD_LIMIT_USER_REQUESTS_PER_MIN": "1000",
    }
    with priced_stack(tmp_path_factory.mktemp("limits"), count=3, env=env) as stack:
        yield stack


@pytest.fixture
async def answerer(stack: tuple[NatsServer, str, list[str]]) -> AsyncIterator[Answerer]:
    me = await Answerer.start(stack[0].url)
    yield me
    await me.close()


async def _fire(bases: list[str], keys: list[str], n: int, clients: int) -> list[httpx.Response]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    out: list[httpx.Response] = []
    limits = httpx.Limits(max_connections=clients * 2)

    async def client(c: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            url = f"{bases[i % len(bases)]}/v1/chat/completions"
            out.append(await c.post(url, json=PRICED_BODY, headers=auth(keys[i % len(keys)])))

    async with httpx.AsyncClient(timeout=30, limits=limits) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    return out


async def test_request_limit_holds_across_three_replicas(
    stack: tuple[NatsServer, str, list[str]], answerer: Answerer
) -> None:
    _, db_url, bases = stack
    org = await make_org(db_url, "ratey", roles=("admin", "member"))
    keys = list(org.keys.values())
    await asyncio.to_thread(wait_for_a_fresh_minute)
    started = time.monotonic()
    responses = await _fire(bases, keys, n=2 * ORG_RPM + 100, clients=16)
    elapsed = time.monotonic() - started
    statuses = Counter(r.status_code for r in responses)
    admitted = statuses[200]
    assert set(statuses) == {200, 429}, statuses
    assert abs(admitted - ORG_RPM) <= ORG_RPM * 0.02, f"admitted {admitted} of limit {ORG_RPM}"
    assert len(answerer.seen) == admitted, "a refused request never becomes a task"
    refused = next(r for r in responses if r.status_code == 429)
    err = refused.json()["error"]
    assert (err["type"], err["code"]) == ("requests", "rate_limit_exceeded")
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == str(ORG_RPM)
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    ok = next(r for r in responses if r.status_code == 200)
    assert int(ok.headers["x-ratelimit-remaining-requests"]) < ORG_RPM
    assert "x-ratelimit-limit-tokens" in ok.headers and "x-ratelimit-remaining-tokens" in ok.headers
    print(f"\n{len(responses)} requests, 3 replicas, {elapsed:.2f} s: admitted {admitted} (limit {ORG_RPM})")


async def test_concurrent_tasks_quota(stack: tuple[NatsServer, str, list[str]], answerer: Answerer) -> None:
    _, db_url, bases = stack
    org = await make_org(db_url, "busy", roles=("member",))
    answerer.hold = True
    firing = asyncio.create_task(
        _fire(bases, [org.keys["member"]], n=ORG_CONCURRENT + 10, clients=ORG_CONCURRENT + 10)
    )
    deadline = time.monotonic() + 20
    while len(answerer.seen) < ORG_CONCURRENT and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    await answerer.release()
    responses = await firing
    codes = Counter(
        (r.status_code, r.json()["error"]["code"] if r.status_code != 200 else "") for r in responses
    )
    assert codes == {(200, ""): ORG_CONCURRENT, (429, "concurrency_limit_exceeded"): 10}
    # The slots were given back (after the responses, and the replicas' idle leases within 250 ms): the
    # organisation can run again.
    assert await _eventually(lambda: _slots_taken(stack[0], org.id), 0) == 0
    again = await _fire(bases, [org.keys["member"]], n=ORG_CONCURRENT, clients=ORG_CONCURRENT)
    assert all(r.status_code == 200 for r in again)


async def test_budget_admits_exactly_what_it_can_pay_for(
    stack: tuple[NatsServer, str, list[str]], answerer: Answerer
) -> None:
    """A free user ($0.50 a day), 50 concurrent requests each reserving $0.05: exactly 10 run."""
    server, db_url, bases = stack
    org = await make_org(db_url, "thrifty", roles=("member",), plan="free", monthly_budget_usd=5.0)
    answerer.hold = True
    firing = asyncio.create_task(_fire(bases, [org.keys["member"]], n=50, clients=50))
    deadline = time.monotonic() + 20
    while len(answerer.seen) < 10 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # time for any overshoot to show
    ran = len(answerer.seen)
    await answerer.release()
    responses = await firing
    codes = Counter(
        (r.status_code, r.json()["error"]["code"] if r.status_code != 200 else "") for r in responses
    )
    assert ran == 10
    assert codes == {(200, ""): 10, (429, "budget_exceeded"): 40}
    refused = next(r for r in responses if r.status_code == 429)
    assert (
        refused.json()["error"]["type"] == "insufficient_quota" and int(refused.headers["retry-after"]) >= 1
    )

    # Settled to the real cost (2 output tokens = $0.001 each; settlement runs after the response, and
    # the replicas' unused leases come back within 250 ms): the router sees the organisation's headroom,
    # and the rest of the day's budget is free again.
    assert await _eventually(lambda: _headroom(server, org.id), 5.0 - 10 * 0.001) == pytest.approx(4.99)
    more = await _fire(bases, [org.keys["member"]], n=1, clients=1)
    assert more[0].status_code == 200
    assert await _eventually(lambda: _headroom(server, org.id), 5.0 - 11 * 0.001) == pytest.approx(4.989)
    nc = await nats.connect(server.url)
    kv = await nc.jetstream().key_value(subjects.KV_BUDGETS)
    headroom = orjson.loads((await kv.get(org.id)).value)
    await nc.close()
    assert headroom["limit_usd"] == 5.0


async def _eventually(
    read: Callable[[], Awaitable[float]], expected: float, *, within_s: float = 3.0
) -> float:
    """`read()` polled until it gives `expected` (to 1e-6) or `within_s` passes; its last value."""
    deadline = time.monotonic() + within_s
    while True:
        value = await read()
        if abs(value - expected) < 1e-6 or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def _headroom(server: NatsServer, tenant_id: str) -> float:
    nc = await nats.connect(server.url)
    try:
        kv = await nc.jetstream().key_value(subjects.KV_BUDGETS)
        return float(orjson.loads((await kv.get(tenant_id)).value)["headroom_usd"])
    finally:
        await nc.close()


async def _slots_taken(server: NatsServer, tenant_id: str) -> float:
    nc = await nats.connect(server.url)
    try:
        kv = await nc.jetstream().key_value(subjects.KV_GATEWAY_LIMITS)
        return await SlotTable(kv).read(f"conc.org.{tenant_id}")
    finally:
        await nc.close()
