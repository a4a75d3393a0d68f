"""A steady load of tasks through the task API (`POST /v1/tasks`, 202 = accepted), and the invariants
checked once the faults are over: every accepted task ends completed or failed with a reason; every
completed task is charged exactly once and has its audit entries; the ledger verifies; the SIEM received
every entry."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import nats
import nats.js.errors
import orjson
from nats.js import api
from sqlalchemy import select

from switchyard.audit.models import LedgerEntry
from switchyard.billing.models import UsageEntry
from switchyard.common import dlq, kv, subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import decode
from switchyard.common.events import TaskCompleted, TaskFailed
from switchyard.gateway.taskapi import idempotency


@dataclass
class LoadStats:
    accepted: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # why a submission was never accepted
    retried: Counter[str] = field(default_factory=Counter)  # why an attempt was retried
    latencies_ms: list[float] = field(default_factory=list)  # of accepted submissions, retries included
    keys: dict[str, str] = field(default_factory=dict)  # idempotency key -> the task id it got
    attempts: dict[str, list[str]] = field(default_factory=dict)  # idempotency key -> each attempt's answer
    tenant_id: str = ""  # the load's organisation (a 202 says it)

    def summary(self) -> str:
        return (
            f"accepted {len(self.accepted)}, not accepted {sum(self.refused.values())} {dict(self.refused)}, "
            f"retried {sum(self.retried.values())} {dict(self.retried)}"
        )


RETRYABLE = {429, 502, 503, 504}


async def steady_load(
    base_url: str,
    api_key: str,
    *,
    rate: float,
    stop: asyncio.Event,
    stats: LoadStats,
    max_tokens: int = 16,
    retry_for_s: float = 30.0,
) -> None:
    """Submits `rate` tasks a second until `stop` is set, as a careful client does: each submission has an
    Idempotency-Key and is retried (after Retry-After, else 0.5 s) on a dropped connection, a 429/5xx or
    an answer that says `x-should-retry: true`, for up to `retry_for_s`; a retry that gets a second task id
    for one key is a lost guarantee."""
    headers = {"Authorization": f"Bearer {api_key}"}
    run = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=15.0) as client:

        async def one(n: int) -> None:
            body = {
                "model": "auto",
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": f"Chaos task {n}: name a prime number."}],
            }
            key = f"chaos-{run}-{n}"
            started = time.perf_counter()
            give_up = time.monotonic() + retry_for_s
            tried = stats.attempts.setdefault(key, [])
            while True:
                wait = 0.5
                try:
                    r = await client.post("/v1/tasks", json=body, headers={"Idempotency-Key": key})
                except httpx.HTTPError as exc:
                    reason = type(exc).__name__
                    tried.append(reason)
                else:
                    tried.append(str(r.status_code))
                    if r.status_code == 202:
                        task_id = r.json()["id"]
                        stats.tenant_id = r.json()["tenant_id"]
                        if stats.keys.setdefault(key, task_id) != task_id:
                            stats.refused[f"second task for one key {key}"] += 1
                        elif task_id not in stats.accepted:
                            stats.accepted.append(task_id)
                            stats.latencies_ms.append((time.perf_counter() - started) * 1000)
                        return
                    reason = f"http {r.status_code} {_error_code(r)}".strip()
                    tried[-1] = reason
                    # x-should-retry: the gateway's word (a 409 idempotency_key_in_use: the first
                    # request with this key is still being submitted, or its replica went away)
                    if r.status_code not in RETRYABLE and r.headers.get("x-should-retry") != "true":
                        stats.refused[reason] += 1
                        return
                    wait = float(r.headers.get("retry-after", wait))
                if time.monotonic() + wait > give_up:
                    stats.refused[reason] += 1
                    return
                stats.retried[reason] += 1
                await asyncio.sleep(wait)

        await paced(one, rate=rate, stop=stop)


async def paced(one: Callable[[int], Awaitable[None]], *, rate: float, stop: asyncio.Event) -> None:
    """Starts `one(1)`, `one(2)`, ... `rate` a second until `stop` is set, each on its own (a slow one holds
    the next back no more than a fast one), then waits for those still running."""
    pending: set[asyncio.Task[None]] = set()
    n, next_at = 0, time.monotonic()
    while not stop.is_set():
        n += 1
        task = asyncio.create_task(one(n))
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_at += 1.0 / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    if pending:
        await asyncio.gather(*pending)


def _error_code(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["code"] or "")
    except (ValueError, KeyError, TypeError):
        return ""


def charged_unaccepted(stats: LoadStats, charges: Counter[str]) -> dict[str, list[str]]:
    """The keys whose client was never told 202 but whose task ran and was charged (an earlier attempt
    published it and its answer was lost), with each attempt's answer: told apart from "did nothing"."""
    at = datetime.now(UTC)
    found = {}
    for key, tried in stats.attempts.items():
        if key in stats.keys or not stats.tenant_id:
            continue
        if any(charges[t] for t in idempotency.task_ids(stats.tenant_id, key, at)[:2]):
            found[key] = tried
    return found


async def read_results(nats_url: str) -> dict[str, list[TaskCompleted | TaskFailed]]:
    """Every result event stored so far, by task id (a pull consumer that acks nothing)."""
    nc = await nats.connect(nats_url)
    out: dict[str, list[TaskCompleted | TaskFailed]] = {}
    try:
        sub = await nc.jetstream().pull_subscribe(
            subjects.RESULT_ALL,
            stream=subjects.STREAM_EVENTS,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL, ack_policy=api.AckPolicy.NONE),
        )
        while True:
            try:
                for msg in await sub.fetch(1000, timeout=1.0):
                    _, payload = decode(msg.data)
                    if isinstance(payload, TaskCompleted | TaskFailed):
                        out.setdefault(payload.task_id, []).append(payload)
            except (nats.errors.TimeoutError, TimeoutError):
                if (await sub.consumer_info()).num_pending == 0:
                    break
        await sub.unsubscribe()
    finally:
        await nc.close()
    return out


async def wait_results(
    nats_url: str, task_ids: list[str], timeout: float
) -> dict[str, list[TaskCompleted | TaskFailed]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = await read_results(nats_url)
        except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError):
            # A cluster that has just had a node restarted can answer a fetch with 503 while its
            # consumer leader is being elected: the read starts over, inside the same deadline.
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)
            continue
        if set(task_ids) <= set(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(1.0)


@dataclass
class Outcome:
    accepted: int
    completed: int
    failed: Counter[str]
    duplicate_results: int
    charges: Counter[str]
    ledger_rows: dict[int, LedgerEntry]


async def check_invariants(
    nats_url: str, db_url: str, accepted: list[str], *, timeout: float = 90.0
) -> tuple[Outcome, list[str]]:
    """Returns the outcome and the list of broken invariants (empty: nothing lost)."""
    problems: list[str] = []
    results = await wait_results(nats_url, accepted, timeout)
    missing = [t for t in accepted if t not in results]
    if missing:
        problems.append(f"{len(missing)} accepted tasks have no result, e.g. {missing[:5]}")
    completed = {t for t in accepted if any(isinstance(r, TaskCompleted) for r in results.get(t, []))}
    failed = Counter(
        r.error_code for t in accepted for r in results.get(t, [])[:1] if isinstance(r, TaskFailed)
    )
    for t in accepted:
        for r in results.get(t, []):
            if isinstance(r, TaskFailed) and not (r.error_code and r.error_message):
                problems.append(f"task {t} failed without a reason")
    mixed = [t for t in accepted if len({type(r) for r in results.get(t, [])}) > 1]
    if mixed:
        problems.append(f"{len(mixed)} tasks both completed and failed, e.g. {mixed[:3]}")
    duplicates = sum(len(results.get(t, [])) - 1 for t in accepted if results.get(t))

    engine = create_engine(db_url)
    sessions = sessionmaker(engine)
    try:
        deadline = time.monotonic() + timeout
        while True:
            async with sessions() as s:
                charges = Counter((await s.execute(select(UsageEntry.task_id))).scalars().all())
                rows = {r.seq: r for r in (await s.execute(select(LedgerEntry))).scalars()}
            actions: dict[str, set[str]] = {}
            for row in rows.values():
                actions.setdefault(row.resource, set()).add(row.action)
            uncharged = [t for t in completed if charges[t] == 0]
            unaudited = [
                t
                for t in completed
                if not {"task.submit", "task.complete", "billing.usage"} <= actions.get(f"task/{t}", set())
            ]
            if (not uncharged and not unaudited) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
    finally:
        await engine.dispose()
    if uncharged:
        problems.append(f"{len(uncharged)} completed tasks never charged, e.g. {uncharged[:3]}")
    twice = [t for t, n in charges.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} tasks charged more than once, e.g. {twice[:3]}")
    if unaudited:
        problems.append(f"{len(unaudited)} completed tasks lack audit entries, e.g. {unaudited[:3]}")
    problems += await wait_gateways_settled(nats_url, timeout)
    outcome = Outcome(len(accepted), len(completed), failed, duplicates, charges, rows)
    return outcome, problems


async def wait_gateways_settled(nats_url: str, timeout: float) -> list[str]:
    """Once every task has ended, no gateway replica still lists an admitted task as unsettled, and a
    killed replica's list is gone (another replica settled its tasks' reservations and deleted it): every
    entry of `switchyard-gateways` is a live replica's (renewed) and empty."""
    nc = await nats.connect(nats_url)
    try:
        bucket = await nc.jetstream().key_value(subjects.KV_GATEWAYS)
        deadline = time.monotonic() + timeout
        while True:
            entries = {k: orjson.loads(v) for k, v in (await kv.read_all(bucket)).items()}
            now = time.time()
            left = {k: len(e["tasks"]) for k, e in entries.items() if e["tasks"] or e["expires_at"] < now}
            if not left or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
    finally:
        await nc.close()
    return [f"gateway replicas with unsettled tasks or gone unsettled (tasks listed): {left}"] if left else []


async def read_dead_letters(nats_url: str) -> list[dlq.DeadLetter]:
    """Every dead letter on the bus (a run's faults may leave some: each is read, not assumed away)."""
    nc = await nats.connect(nats_url)
    try:
        return [letter async for letter in dlq.scan(nc.jetstream())]
    finally:
        await nc.close()


async def read_ledger(db_url: str) -> dict[int, LedgerEntry]:
    """The ledger's rows by seq, as they are now."""
    engine = create_engine(db_url)
    try:
        async with sessionmaker(engine)() as s:
            return {r.seq: r for r in (await s.execute(select(LedgerEntry))).scalars()}
    finally:
        await engine.dispose()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]
