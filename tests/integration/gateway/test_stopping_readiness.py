"""A rolling update as a load balancer sees it: from the gateway's SIGTERM on, `/readyz` answers 503
`stopping` with the reason, while the replica goes on taking connections for SWITCHYARD_STOP_UNREADY_S
(the balancer's health check has time to take it out) and every request it took, before or during that
time, is answered. Before: `/readyz` said 200 until the listening socket closed at the signal, and a
request sent a moment later met a refused connection."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import orjson
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import kv, subjects
from switchyard.common.config import CommonSettings
from switchyard.common.service import create_service, start, stop
from tests.integration.gateway.harness import PRICED_BODY, Answerer, Bases, auth, make_org, priced_stack

pytestmark = pytest.mark.integration

UNREADY_S = 3.0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[NatsServer, str, Bases]]:
    env = {
        "SWITCHYARD_STOP_UNREADY_S": str(UNREADY_S),
        "SWITCHYARD_STOP_GRACE_S": "6",
        "SWITCHYARD_TASK_TIMEOUT_S": "20",
    }
    with priced_stack(tmp_path, count=1, env=env) as stack:
        yield stack


async def test_a_stopping_gateway_is_unready_and_answers_what_it_takes(
    stack: tuple[NatsServer, str, Bases],
) -> None:
    server, db_url, bases = stack
    base, proc = bases[0], bases.procs[0]
    key = (await make_org(db_url, "rolled", roles=("member",))).keys["member"]
    chat = f"{base}/v1/chat/completions"
    answerer = await Answerer.start(server.url, hold=True)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            ready = await client.get(f"{base}/readyz")
            assert ready.status_code == 200, ready.text
            before = asyncio.create_task(client.post(chat, json=PRICED_BODY, headers=auth(key)))
            while not answerer.held:
                await asyncio.sleep(0.05)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            async with httpx.AsyncClient(timeout=5) as fresh:  # a new connection, as a health checker's
                unready = await fresh.get(f"{base}/readyz")
            assert unready.status_code == 503, unready.text
            body = unready.json()
            assert body["status"] == "stopping" and "stopping" in body["reason"], body
            # still taking connections: a request the balancer sent before it noticed is answered
            during = asyncio.create_task(
                httpx.AsyncClient(timeout=30).post(chat, json=PRICED_BODY, headers=auth(key))
            )
            while len(answerer.held) < 2:
                assert time.monotonic() - signalled < UNREADY_S, (
                    "the request sent while unready was not taken"
                )
                await asyncio.sleep(0.05)
            await asyncio.sleep(max(0.0, UNREADY_S + 0.5 - (time.monotonic() - signalled)))
            with pytest.raises(httpx.ConnectError):  # then the listening socket closes
                await httpx.AsyncClient(timeout=2).get(f"{base}/healthz")
            await answerer.release()
            answers = [await before, await during]
            assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    finally:
        await answerer.close()
    assert await asyncio.to_thread(proc.wait, 20) == -signal.SIGTERM


@pytest.fixture
def slow_to_close(tmp_path: Path) -> Iterator[tuple[NatsServer, str, Bases]]:
    env = {"SWITCHYARD_STOP_UNREADY_S": "60", "SWITCHYARD_REPLICA_TTL_S": "1", "SWITCHYARD_STOP_GRACE_S": "4"}
    with priced_stack(tmp_path, count=1, env=env) as stack:
        yield stack


async def test_a_replica_taken_for_dead_stops_without_the_unready_period(
    slow_to_close: tuple[NatsServer, str, Bases],
) -> None:
    """A replica that finds its in-flight list claimed by another stops itself (it may give nothing back
    of what it admits from then on): at once, not after SWITCHYARD_STOP_UNREADY_S taking more requests."""
    server, _, bases = slow_to_close
    nc = await nats.connect(server.url)
    try:
        bucket = await nc.jetstream().key_value(subjects.KV_GATEWAYS)
        [name] = [k for k in await kv.keys(bucket) if k.startswith("gateway-0-")]

        def claim(current: bytes | None) -> tuple[bytes | None, None]:
            entry = orjson.loads(current or b"{}")
            entry["claim"] = {"by": "another-replica", "until": time.time() + 60}
            return orjson.dumps(entry), None

        await kv.update(bucket, name, claim)
    finally:
        await nc.close()
    claimed = time.monotonic()
    assert await asyncio.to_thread(bases.procs[0].wait, 30) == -signal.SIGTERM
    assert time.monotonic() - claimed < 20


async def test_the_whole_platform_check_does_not_count_a_stopping_service(
    stack: tuple[NatsServer, str, Bases],
) -> None:
    """`/readyz?strict=true` (what `switchyard up` and an operator ask) took any ping reply: a service whose
    only replica was stopping (draining for up to 605 s) was `true`. Now it is `false`, and `problems`
    says why."""
    server, _, bases = stack
    settings = CommonSettings(nats_url=server.url, instance="billing-a", metrics_port=0)
    service = create_service("billing", settings)
    release = asyncio.Event()

    async def still_draining() -> None:
        await release.wait()

    service.drain.append(still_draining)
    await start(service, settings)
    stopping: asyncio.Task[None] | None = None
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            before = (await client.get(f"{bases[0]}/readyz", params={"strict": "true"})).json()
            assert before["services"]["billing"] is True and "billing" not in before.get("problems", {})
            stopping = asyncio.create_task(stop(service, grace_s=1))
            await asyncio.sleep(0.3)
            during = await client.get(f"{bases[0]}/readyz", params={"strict": "true"})
        assert during.status_code == 503
        assert during.json()["services"]["billing"] is False
        assert "stopping" in during.json()["problems"]["billing"], during.json()
        assert "did not answer" in during.json()["problems"]["router"]  # not running at all
    finally:
        release.set()
        await (stopping if stopping is not None else stop(service, grace_s=1))
