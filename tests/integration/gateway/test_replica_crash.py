"""A gateway replica killed with SIGKILL while its tasks are in flight: another replica settles them, so the
budget they reserved comes back to what they cost, and the user can spend the rest of it the same day
(before, the five worst cases stayed counted until the day and the month ended)."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import orjson
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import kv, subjects
from tests.integration.gateway.harness import (
    PRICED_BODY,
    Answerer,
    Bases,
    auth,
    make_org,
    priced_stack,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[NatsServer, str, Bases]]:
    env = {"SWITCHYARD_REPLICA_TTL_S": "1", "SWITCHYARD_TASK_TIMEOUT_S": "30", "SWITCHYARD_STOP_GRACE_S": "4"}
    with priced_stack(tmp_path, count=2, env=env) as stack:
        yield stack


async def _spend(url: str) -> list[int]:
    nc = await nats.connect(url)
    try:
        values = await kv.read_all(await nc.jetstream().key_value(subjects.KV_SPEND))
    finally:
        await nc.close()
    return sorted(int(v) for v in values.values())


async def _post(base: str, key: str, n: int, *, streamed: int = 0) -> list[httpx.Response | BaseException]:
    """`n` requests, the last `streamed` of them streamed."""
    async with httpx.AsyncClient(timeout=30) as client:
        calls = (
            client.post(
                f"{base}/v1/chat/completions",
                json={**PRICED_BODY, "stream": i >= n - streamed},
                headers=auth(key),
            )
            for i in range(n)
        )
        return await asyncio.gather(*calls, return_exceptions=True)


async def _metrics_with(base: str, line: str, timeout_s: float = 5.0) -> str:
    """The replica's /metrics once it shows `line`, or as it is after `timeout_s`: a task's counter is
    incremented just after its last give-back, which the test may have seen first."""
    deadline = time.monotonic() + timeout_s
    while line not in (text := httpx.get(f"{base}/metrics").text) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return text


async def test_a_killed_replicas_reservations_are_settled_by_another(
    stack: tuple[NatsServer, str, Bases], tmp_path: Path
) -> None:
    server, db_url, bases = stack
    # A free user ($0.50 a day) of an organisation with $0.50 a month: both budgets exact (no spare leases).
    org = await make_org(db_url, "fragile", roles=("member",), plan="free", monthly_budget_usd=0.5)
    key = org.keys["member"]
    answerer = await Answerer.start(server.url, hold=True)
    try:
        firing = asyncio.create_task(_post(bases[0], key, 5))
        deadline = time.monotonic() + 20
        while len(answerer.held) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(answerer.held) == 5
        assert await _spend(server.url) == [250_000, 250_000]  # five worst cases, the day's and the month's
        await asyncio.sleep(0.3)  # the replica's in-flight list is written 0.1 s after an admission

        bases.procs[0].kill()
        bases.procs[0].wait()
        assert all(isinstance(r, httpx.HTTPError) for r in await firing)
        await answerer.release()  # the five tasks end: 2 output tokens each, $0.001
        released = time.monotonic()

        deadline = time.monotonic() + 20
        while (spent := await _spend(server.url)) != [5_000, 5_000] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert spent == [5_000, 5_000]
        print(f"\nsettled by the other replica {time.monotonic() - released:.1f} s after the results")
        log = (tmp_path / "gateway-1.log").read_text()
        assert log.count("for a gone replica") == 5
        lost = 'switchyard_gateway_orphaned_tasks_total{cause="lost",outcome="answered"} 5.0'
        metrics = await _metrics_with(bases[1], lost)
        assert lost in metrics

        # The rest of the budget is there: $0.495 pays for nine more worst cases and a tenth capped at
        # the $0.045 left (its output cap lowered: the budget is hard), not the five it would have paid
        # for with the dead replica's reservations still counted.
        answerer.hold = True
        firing = asyncio.create_task(_post(bases[1], key, 12))
        deadline = time.monotonic() + 20
        while len(answerer.held) < 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # time for any overshoot to show
        assert len(answerer.held) == 10
        caps = sorted(t.budget.max_output_tokens for t in answerer.held if t.budget is not None)
        assert len(caps) == 10 and caps[1:] == [100] * 9 and 80 <= caps[0] < 100
        await answerer.release()
        codes = Counter(
            r.status_code if r.status_code == 200 else r.json()["error"]["code"]
            for r in await firing
            if isinstance(r, httpx.Response)
        )
        assert codes == {200: 10, "budget_exceeded": 2}
    finally:
        await answerer.close()


async def _body_never_finished(base: str, key: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A request whose client sends half its body and then nothing: still reading it when the stop ends."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    body = orjson.dumps(PRICED_BODY)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]
    )
    await writer.drain()
    return reader, writer


async def test_a_replica_stopped_with_tasks_in_flight_hands_them_over(
    stack: tuple[NatsServer, str, Bases], tmp_path: Path
) -> None:
    """A rolling restart: the replica gets SIGTERM while five requests (two of them streamed, one of those
    under way) and a task of the task API are in flight, and its graceful stop (4 s here) ends before they
    do. A second before it ends, the gateway ends them itself: the requests waiting for their answer get
    a 503 to retry at once, the stream under way its error event (before, uvicorn cut its connection
    without a word); their tasks are cancelled on the bus. It waits 5 s for their outcomes, and since none
    came (the stand-in pipeline ignores cancellations) its last write hands them over with the task API's
    task, which runs on; the other replica settles all six at their outcomes, as handed over, not lost:
    `SwitchyardGatewayReplicaLost` does not fire for a restart. A request still sending its body when
    uvicorn cuts what is left gets a 503 with its request id too (before: uvicorn's plain-text 500).
    Before all this, the cut requests and the task API's task were settled as if they had never run
    (their worst cases given back, their cost never counted)."""
    server, db_url, bases = stack
    org = await make_org(db_url, "restarted", roles=("member",), plan="free", monthly_budget_usd=0.5)
    key = org.keys["member"]
    answerer = await Answerer.start(server.url, hold=True)
    answerer.begin = 1
    try:
        firing = asyncio.create_task(_post(bases[0], key, 5, streamed=2))
        queued = httpx.post(f"{bases[0]}/v1/tasks", json=PRICED_BODY, headers=auth(key), timeout=30)
        assert queued.status_code == 202, queued.text
        deadline = time.monotonic() + 20
        while len(answerer.held) < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(answerer.held) == 6
        assert sum(t.request.stream for t in answerer.held) == 2
        reader, writer = await _body_never_finished(bases[0], key)
        await asyncio.sleep(0.3)  # the server has read the headers
        signalled = time.monotonic()
        bases.procs[0].send_signal(signal.SIGTERM)
        answers = await firing
        ended_s = time.monotonic() - signalled
        cut_short = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await asyncio.to_thread(bases.procs[0].wait, 30)

        assert all(isinstance(r, httpx.Response) for r in answers), answers
        refused = [r for r in answers if isinstance(r, httpx.Response) and r.status_code == 503]
        assert len(refused) == 4  # the three plain requests and the stream with no output yet
        assert {r.json()["error"]["code"] for r in refused} == {"gateway_stopping"}
        assert {r.headers["retry-after"] for r in refused} == {"1"}
        (begun,) = [r for r in answers if isinstance(r, httpx.Response) and r.status_code == 200]
        events = [line for line in begun.text.splitlines() if line.startswith("data: ")]
        assert orjson.loads(events[0][6:])["choices"][0]["delta"]["content"] == "Par"
        assert orjson.loads(events[-1][6:])["error"]["code"] == "gateway_stopping"
        assert "data: [DONE]" not in begun.text
        assert 2.5 < ended_s < 3.9, ended_s  # a second before the 4 s grace ran out

        head, _, body = cut_short.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), cut_short
        error = orjson.loads(body)["error"]
        assert error["code"] == "gateway_stopping" and error["request_id"].encode() in head

        stopped = (tmp_path / "gateway-0.log").read_text()
        assert "6 admitted tasks left unsettled for another replica" in stopped
        assert stopped.count("a request was cut by the gateway's stop: its task was cancelled") == 5
        assert stopped.count("cut by the gateway's stop before its answer began") == 1
        assert "Traceback" not in stopped
        await answerer.release()

        deadline = time.monotonic() + 20
        while (spent := await _spend(server.url)) != [6_000, 6_000] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert spent == [6_000, 6_000]
        log = (tmp_path / "gateway-1.log").read_text()
        assert "stopped with tasks in flight: settling them" in log and "is gone" not in log
        handed_over = 'switchyard_gateway_orphaned_tasks_total{cause="handed_over",outcome="answered"} 6.0'
        metrics = await _metrics_with(bases[1], handed_over)
        assert handed_over in metrics
        lost = re.findall(
            r'^switchyard_gateway_orphaned_tasks_total\{cause="lost",.*\} (\S+)$', metrics, re.M
        )
        assert lost and set(lost) == {"0.0"}  # at 0 from the start: none taken for lost
        task = httpx.get(f"{bases[1]}/v1/tasks/{queued.json()['id']}", headers=auth(key), timeout=30)
        assert task.json()["status"] == "completed"  # the other replica answers for it
    finally:
        await answerer.close()


async def test_a_replica_taken_for_dead_stops(stack: tuple[NatsServer, str, Bases], tmp_path: Path) -> None:
    """A replica that finds its in-flight list claimed (it was alive but silent past the TTL, and another
    replica is settling its tasks) gives nothing back from then on and stops itself."""
    server, _, bases = stack
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
    code = await asyncio.to_thread(bases.procs[0].wait, 15)
    assert code == -signal.SIGTERM  # it sent itself SIGTERM (uvicorn stops, then re-raises the signal)
    assert f"gateway replica {name} was taken for dead" in (tmp_path / "gateway-0.log").read_text()
    assert httpx.get(f"{bases[1]}/healthz").status_code == 200  # the other replica serves on
