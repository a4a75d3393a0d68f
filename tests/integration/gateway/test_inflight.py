"""A gateway replica's admitted, unsettled tasks are listed in JetStream KV (real nats-server), so that when
the replica dies another one settles them: the reserved tokens and spend come back to exactly what the
tasks used, once, and a replica taken for dead gives nothing back itself."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import nats
import orjson
import pytest
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, kv, subjects
from switchyard.common.budgets import budgets_bucket
from switchyard.common.envelope import decode, encode
from switchyard.common.events import TaskCompleted, TaskFailed, TaskTimedOut, Usage
from switchyard.common.events.base import EventPayload
from switchyard.common.leases import IntCounters, Leases, SlotTable
from switchyard.gateway import inflight as inflight_module
from switchyard.gateway.admission import Admission, Pass
from switchyard.gateway.budgets import pricing
from switchyard.gateway.budgets.service import Budgets
from switchyard.gateway.inflight import SPEND, WINDOWS, Fenced, InFlight, Orphans, gateways_bucket
from switchyard.gateway.limits.control import Control, control_bucket
from switchyard.gateway.limits.counters import counter_bucket
from switchyard.gateway.limits.models import Limits
from switchyard.gateway.limits.service import RateLimiter
from switchyard.gateway.tasks import stored_result
from tests.integration.gateway.test_admission import ALICE, MODEL, POLICY, REQUEST

pytestmark = pytest.mark.integration

COST = 1_000  # micro-USD: 2 output tokens at $0.50 per 1K
USED = 11  # tokens: 9 in, 2 out
RESERVED = pricing.prompt_tokens(REQUEST) + 100  # tokens: the prompt's estimate and max_tokens


class Watched(IntCounters):
    """Real counters that note which tasks the gateways bucket lists each time units are given back."""

    def __init__(self, bucket: object, gateways: object) -> None:
        super().__init__(bucket)  # type: ignore[arg-type]
        self.gateways = gateways
        self.listed_at_returns: list[set[str]] = []

    async def add(self, key: str, delta: int) -> int:
        if delta < 0:
            listed: set[str] = set()
            for value in (await kv.read_all(self.gateways)).values():  # type: ignore[arg-type]
                listed |= {t["task"] for t in orjson.loads(value)["tasks"].values()}
            self.listed_at_returns.append(listed)
        return await super().add(key, delta)


@dataclass
class Replica:
    admission: Admission
    inflight: InFlight
    windows: Leases
    spend: Leases
    tokens: Watched
    money: Watched

    def orphans(self, js: JetStreamContext) -> Orphans:
        return Orphans(
            self.inflight,
            js,
            bus.EventPublisher(js, source="switchyard/gateway"),
            stores={WINDOWS: self.tokens, SPEND: self.money},
            policy=POLICY,
            skew_s=0.1,
        )

    async def admit(self, task_id: str, *, timeout_s: float = 60.0) -> Pass:
        return await self.admission.admit(
            ALICE, REQUEST, providers={"local"}, task_id=task_id, timeout_s=timeout_s
        )


async def _replica(js: JetStreamContext, name: str, *, ttl_s: float = 1.0) -> Replica:
    gateways = await gateways_bucket(js)
    limit_bucket = await counter_bucket(js, "test-limits", ttl_s=3600)
    tokens = Watched(limit_bucket, gateways)
    money = Watched(await counter_bucket(js, "test-spend", ttl_s=3600), gateways)
    listed = InFlight(gateways, replica=name, ttl_s=ttl_s, beat_s=0.2)
    windows = Leases(tokens, before_return=listed.before_return)
    spend = Leases(money, divisor=64, before_return=listed.before_return)
    limiter = RateLimiter(
        windows, Leases(SlotTable(limit_bucket)), Limits(), Control(await control_bucket(js))
    )
    admission = Admission(
        POLICY, limiter, Budgets(spend, await budgets_bucket(js)), default_max_tokens=256, inflight=listed
    )
    return Replica(admission, listed, windows, spend, tokens, money)


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    await bus.ensure_streams(nc.jetstream())
    yield nc.jetstream()
    await nc.close()


async def _publish_result(js: JetStreamContext, task_id: str, *, failed: bool = False) -> None:
    result: EventPayload
    if failed:  # nothing charged: everything it reserved comes back
        result = TaskFailed(
            task_id=task_id,
            tenant_id="acme",
            error_code="no_model",
            error_message="x",
            failed_at=datetime.now(UTC),
        )
    else:
        result = _answered(task_id)
    _, raw = encode(result, source="test")
    await js.publish(subjects.result_subject("acme", task_id), raw)


def _answered(task_id: str) -> TaskCompleted:
    """The task's answer: 9 tokens in, 2 out (USED), costing COST."""
    return TaskCompleted(
        task_id=task_id, tenant_id="acme", model=MODEL, provider="local", tier="local", content="ok",
        finish_reason="stop", usage=Usage(prompt_tokens=9, completion_tokens=2), attempts=1,
        latency_ms=1.0, completed_at=datetime.now(UTC),
    )  # fmt: skip


def _counters(admitted: Pass) -> tuple[list[str], list[str]]:
    assert admitted.ticket is not None and admitted.reservation is not None
    return [w.key for w in admitted.ticket.token_wants], [w.key for w in admitted.reservation.wants]


async def test_a_task_leaves_the_list_before_any_of_its_units_go_back(js: JetStreamContext) -> None:
    """A settled task's units wait in the lease; when they are handed back, the list written first no longer
    holds the task (the task still running stays listed)."""
    replica = await _replica(js, "r-1")
    await replica.inflight.start()
    done, running = await replica.admit("t-done"), await replica.admit("t-running")
    await replica.inflight.write()
    entry = orjson.loads((await replica.inflight.kv.get("r-1")).value)
    held = {t["task"]: t for t in entry["tasks"].values()}
    assert set(held) == {"t-done", "t-running"}
    assert held["t-done"][SPEND][0] == 50_000 and held["t-done"][WINDOWS][0] == RESERVED

    await replica.admission.settle_with(done, None)  # released: all of it goes back, into the leases
    for leases in (replica.windows, replica.spend):
        await leases.tidy(everything=True)
    returns = replica.tokens.listed_at_returns + replica.money.listed_at_returns
    assert returns and all(listed == {"t-running"} for listed in returns)

    await replica.admission.settle_with(running, None)
    await replica.inflight.stop()
    assert await kv.read(replica.inflight.kv, "r-1") == (None, None)  # nothing left in flight: gone


async def test_a_dead_replicas_tasks_are_settled_once_by_another(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica A admits three tasks and dies (stops writing). B and C scan at once: one claims A's entry
    and settles each task at its outcome (an answer, a failure with nothing charged, none: timed out at its
    deadline and released); the counters hold exactly what the tasks used plus the lease A held unused."""
    monkeypatch.setattr(inflight_module, "SETTLE_WAIT_S", 0.2)
    a = await _replica(js, "a")
    answered = await a.admit("t-answered")
    await a.admit("t-failed")
    await a.admit("t-lost", timeout_s=0)  # its result never comes
    await a.inflight.write()  # A's last write; then it is gone
    token_keys, spend_keys = _counters(answered)
    await _publish_result(js, "t-answered")
    await _publish_result(js, "t-failed", failed=True)

    b, c = await _replica(js, "b"), await _replica(js, "c")
    await b.inflight.start()  # B and C live on: they renew their (empty) entries
    await c.inflight.start()
    settlers = [b.orphans(js), c.orphans(js)]
    assert [await s.scan() for s in settlers] == [[], []]  # A is alive for ttl_s after its write
    await asyncio.sleep(1.2)
    claimed = await asyncio.gather(*(s.scan() for s in settlers))
    assert sorted(claimed) == [[], ["a"]]
    deadline = time.monotonic() + 10
    while (await kv.read(a.inflight.kv, "a"))[0] is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert (await kv.read(a.inflight.kv, "a"))[0] is None  # everything settled: the entry is gone
    assert sum(s.settled for s in settlers) == 3
    timed_out = await js.get_last_msg(subjects.STREAM_EVENTS, subjects.TASK_TIMED_OUT)
    assert decode(timed_out.data, (TaskTimedOut,))[1].task_id == "t-lost"  # the executor stops it
    for key in spend_keys:
        assert await b.money.read(key) == COST + a.spend.free(key)
    for key in token_keys:
        assert await b.tokens.read(key) == USED + a.windows.free(key)
    for s in settlers:
        await s.stop()
        await s.inflight.stop()


async def test_a_replica_that_stops_hands_its_tasks_over_without_waiting_out_the_ttl(
    js: JetStreamContext,
) -> None:
    """A stops (a rolling restart) with two tasks running: one's outcome comes while A waits for it and A
    settles it; the other's does not, so A leaves it listed rather than releasing it as a task that never
    ran. A's last write marks the entry stopped and expired, so B, just started, claims it at its first
    scan although A's TTL is 60 s, settles the task at its outcome, and counts it handed over, not lost
    (the alert on lost replicas stays quiet)."""
    a = await _replica(js, "a", ttl_s=60.0)
    await a.inflight.start()
    admitted, quick = await a.admit("t-long"), await a.admit("t-quick")
    token_keys, spend_keys = _counters(admitted)
    before = _orphans("answered", "handed_over"), _orphans("answered", "lost")
    a.admission.stopping()
    await a.admission.settle_with(admitted, None)  # no outcome in time: left listed, not released
    await a.admission.settle_with(quick, _answered("t-quick"))  # an outcome came: settled here
    assert not admitted.closed and quick.closed
    for leases in (a.windows, a.spend):
        await leases.close()
    await a.inflight.stop()
    entry = orjson.loads((await a.inflight.kv.get("a")).value)
    assert entry["stopped"] is True and entry["expires_at"] <= time.time()
    assert [t["task"] for t in entry["tasks"].values()] == ["t-long"]

    b = await _replica(js, "b")
    await b.inflight.start()
    settler = b.orphans(js)
    # B has just started: it judges no silent replica yet (its own writes must hold ttl_s + skew_s
    # first), but a list handed over needs no judging
    assert await settler.scan() == ["a"]
    await _publish_result(js, "t-long")
    deadline = time.monotonic() + 10
    while settler.settled < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert settler.settled == 1
    assert _orphans("answered", "handed_over") == before[0] + 1
    assert _orphans("answered", "lost") == before[1]
    for key in spend_keys:
        assert await b.money.read(key) == 2 * COST
    for key in token_keys:
        assert await b.tokens.read(key) == 2 * USED
    await settler.stop()
    await b.inflight.stop()


async def test_a_long_task_is_looked_for_less_and_less_often(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settler of a handed-over list looks for a running task's result at growing intervals (from
    `beat_s`, doubling), not at every pass: eight tasks running for 2 s at a 0.05 s beat are looked up
    about six times each, not forty; the one whose result then comes is still settled within its wait."""
    looked: Counter[str] = Counter()

    async def counted(
        js_: JetStreamContext, tenant_id: str, task_id: str
    ) -> TaskCompleted | TaskFailed | None:
        looked[task_id] += 1
        return await stored_result(js_, tenant_id, task_id)

    monkeypatch.setattr(inflight_module, "stored_result", counted)
    a = await _replica(js, "a", ttl_s=60.0)
    await a.inflight.start()
    for i in range(8):  # eight worst cases: within the user's daily $0.50
        await a.admit(f"t-long-{i}")
    a.admission.stopping()
    for leases in (a.windows, a.spend):
        await leases.close()
    await a.inflight.stop()
    b = await _replica(js, "b")
    b.inflight.beat_s = 0.05
    await b.inflight.start()
    settler = b.orphans(js)
    assert await settler.scan() == ["a"]
    await asyncio.sleep(2.0)
    assert 8 * 4 <= sum(looked.values()) <= 8 * 8, looked  # each at ~0, .05, .15, .35, .75, 1.55 s
    await _publish_result(js, "t-long-0")
    published = time.monotonic()
    while settler.settled < 1 and time.monotonic() - published < 10:
        await asyncio.sleep(0.05)
    assert settler.settled == 1
    assert time.monotonic() - published < 3.5  # within the interval reached (1.6 s here, then 3.2 s)
    await settler.stop()
    await b.inflight.stop()


def _orphans(outcome: str, cause: str) -> float:
    value = REGISTRY.get_sample_value(
        "switchyard_gateway_orphaned_tasks_total", {"outcome": outcome, "cause": cause}
    )
    return value or 0.0


async def test_a_replica_taken_for_dead_gives_nothing_back(js: JetStreamContext) -> None:
    """A was only slow: its entry expired and B claimed it. A's own settlement then stays in A's lease (the
    hand-back is refused, A is told to stop), and B settles the task: counted once."""
    a = await _replica(js, "a")
    fenced: list[bool] = []
    a.inflight._on_fenced = lambda: fenced.append(True)
    admitted = await a.admit("t-1")
    await a.inflight.write()
    token_keys, spend_keys = _counters(admitted)
    b = await _replica(js, "b")
    await b.inflight.start()
    settler = b.orphans(js)
    await asyncio.sleep(1.2)
    assert await settler.scan() == ["a"]

    await _publish_result(js, "t-1")
    await a.admission.settle_with(admitted, _answered("t-1"))
    with pytest.raises(Fenced):
        await a.inflight.before_return()
    assert fenced == [True]
    for leases in (a.windows, a.spend):
        await leases.tidy(everything=True)  # refused: the units stay in A's leases
    assert a.tokens.listed_at_returns == [] and a.money.listed_at_returns == []

    deadline = time.monotonic() + 10
    while settler.settled < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert settler.settled == 1
    for key in spend_keys:
        assert await b.money.read(key) == COST + a.spend.free(key) - (50_000 - COST)
    for key in token_keys:
        assert await b.tokens.read(key) == USED + a.windows.free(key) - (RESERVED - USED)
    await settler.stop()
    await b.inflight.stop()


async def test_a_replica_that_could_not_write_judges_nobody(js: JetStreamContext) -> None:
    """After an outage of the bus nobody could write: a replica whose own writes failed does not take
    the others for dead until it has written for as long as they may have been cut off."""
    a, b = await _replica(js, "a"), await _replica(js, "b")
    await a.admit("t-1")
    await a.inflight.write()
    await b.inflight.start()
    settler = b.orphans(js)
    await asyncio.sleep(1.2)  # A's entry has expired
    b.inflight.steady_since = None  # as after a failed write
    assert await settler.scan() == []
    await b.inflight.write()
    assert await settler.scan() == []  # written again just now: A may have been cut off as long
    await asyncio.sleep(1.2)
    assert await settler.scan() == ["a"]
    await settler.stop()
    await b.inflight.stop()
