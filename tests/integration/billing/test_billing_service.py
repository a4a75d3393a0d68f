"""`python -m switchyard.billing` on a real nats-server: results in, usage entries stored, UsageRecorded out —
once per task, however often a result is delivered."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import nats
import pytest
from nats.js import api
from sqlalchemy import select

from switchyard.billing.db import migrations
from switchyard.billing.models import UsageEntry
from switchyard.billing.service import usage_entry_id
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, subjects, vectors
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import decode, encode
from switchyard.common.events import TaskCompleted, TaskFailed, Usage, UsageRecorded
from switchyard.common.policy import DEFAULT_POLICY
from tests.support import event_ids
from tests.support.bus_services import BusService
from tests.support.prices import PRICE_SHEET, write_price_sheet

pytestmark = pytest.mark.integration


def _billing(
    nats_server: NatsServer, db_url: str, tmp_path: Path, **settings: str
) -> Iterator[subprocess.Popen[bytes]]:
    asyncio.run(migrations().upgrade(db_url))
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_DATABASE_URL": db_url,
        "SWITCHYARD_POLICY_PATH": str(PRICE_SHEET),
        **event_ids.ENV,
        **settings,
    }
    yield from BusService("billing", env=env, log_path=tmp_path / "billing.log").running()


@pytest.fixture
def billing_service(
    nats_server: NatsServer, db_url: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    yield from _billing(nats_server, db_url, tmp_path)


@pytest.fixture
def slow_linger_billing(
    nats_server: NatsServer, db_url: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Few results in hand and a long linger: what a batch waits for shows in seconds."""
    yield from _billing(
        nats_server, db_url, tmp_path, SWITCHYARD_BILLING_WORKERS="16", SWITCHYARD_BILLING_LINGER_MS="3000"
    )


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[nats.js.JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    context = nc.jetstream()
    await bus.ensure_streams(context)
    yield context
    await nc.close()


def _completed(task_id: str, model: str) -> TaskCompleted:
    return TaskCompleted(
        task_id=task_id,
        tenant_id="acme",
        user_id="u1",
        model=model,
        provider=model.split("/")[0],
        tier="fast",
        content="Paris",
        finish_reason="stop",
        usage=Usage(prompt_tokens=2000, completion_tokens=1000),
        attempts=1,
        latency_ms=20.0,
        completed_at=datetime.now(UTC),
    )


async def _usage_events(
    js: nats.js.JetStreamContext, expected: int, timeout: float = 20.0
) -> list[UsageRecorded]:
    """Every UsageRecorded on the stream (a fresh ephemeral consumer reads them all)."""
    deadline = time.monotonic() + timeout
    while True:
        sub = await js.pull_subscribe(
            subjects.USAGE_RECORDED,
            stream=subjects.STREAM_EVENTS,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL),
        )
        found: list[tuple[str, UsageRecorded]] = []
        try:
            while True:
                msgs = await sub.fetch(50, timeout=0.5)
                for msg in msgs:
                    event, payload = decode(msg.data, (UsageRecorded,))
                    assert isinstance(payload, UsageRecorded)
                    found.append((event.id, payload))
        except (nats.errors.TimeoutError, TimeoutError):
            pass  # drained
        finally:
            await sub.unsubscribe()
        if len(found) >= expected or time.monotonic() > deadline:
            return [p for _, p in found]
        await asyncio.sleep(0.2)


async def _rows(db_url: str) -> list[UsageEntry]:
    engine = create_engine(db_url)
    try:
        async with sessionmaker(engine)() as session:
            return list((await session.execute(select(UsageEntry).order_by(UsageEntry.task_id))).scalars())
    finally:
        await engine.dispose()


async def test_results_become_usage_entries_and_events_once(
    billing_service: subprocess.Popen[bytes], js: nats.js.JetStreamContext, db_url: str
) -> None:
    publisher = bus.EventPublisher(js, source="switchyard/executor")
    paid = _completed("t1", "openai/gpt-4o-mini")
    _, body = encode(paid, source="switchyard/executor", event_id="result-1", tenant_id="acme")
    for n in range(3):  # a result redelivered or re-published: same CloudEvent id, new Nats-Msg-Ids
        await publisher.publish_raw(subjects.result_subject("acme", "t1"), body, msg_id=f"copy-{n}")
    await publisher.publish(
        _completed("t2", "openai/not-in-the-policy"), subject=subjects.result_subject("acme", "t2")
    )
    failed = TaskFailed(
        task_id="t3",
        tenant_id="acme",
        error_code="provider_error",
        error_message="no",
        failed_at=datetime.now(UTC),
    )
    await publisher.publish(failed, subject=subjects.result_subject("acme", "t3"))
    cached = _completed("t4", "openai/gpt-4o-mini").model_copy(
        update={"usage": Usage(prompt_tokens=2000, completion_tokens=1000, cache_read_tokens=1536)}
    )
    await publisher.publish(cached, subject=subjects.result_subject("acme", "t4"))

    events = await _usage_events(js, 3)
    await asyncio.sleep(1.0)  # a late duplicate would show now
    events = await _usage_events(js, 3)
    assert sorted(e.task_id for e in events) == ["t1", "t2", "t4"]
    first = next(e for e in events if e.task_id == "t1")
    # gpt-4o-mini: 2000 x 0.00015/1K + 1000 x 0.0006/1K
    assert first.cost_usd == pytest.approx(0.0009) and first.priced and first.user_id == "u1"
    assert next(e for e in events if e.task_id == "t2").priced is False
    # 1,536 prompt-cache hits at OpenAI's cached price (0.000075/1K), the other 464 at the input price
    fourth = next(e for e in events if e.task_id == "t4")
    assert fourth.cost_usd == pytest.approx(0.0007848) and fourth.cache_read_tokens == 1536

    rows = await _rows(db_url)
    assert [(r.task_id, r.priced) for r in rows] == [("t1", True), ("t2", False), ("t4", True)]
    assert [(r.cache_read_tokens, r.cache_write_tokens) for r in rows] == [(0, 0), (0, 0), (1536, 0)]
    assert rows[0].id == event_ids.derived("result-1", "usage", tenant_id="acme")  # keyed: no client's guess
    assert rows[0].id != usage_entry_id("result-1")
    last = await js.get_last_msg(subjects.STREAM_EVENTS, subjects.USAGE_RECORDED)
    assert last.headers is not None and last.headers["Nats-Msg-Id"] in {r.id for r in rows}


async def test_a_batch_holding_every_result_in_hand_is_stored_without_lingering(
    slow_linger_billing: subprocess.Popen[bytes], js: nats.js.JetStreamContext, db_url: str
) -> None:
    """As the ledger's writer (tests/integration/audit): a batch of `billing_workers` results is complete.
    Lingering on for `billing_max_batch` (200) stored 16 results per 3 s linger here (~30 s for 160); the
    bound leaves a loaded machine room (at a 2 s linger: 6-9 s, 9.3 s with another test run beside it)."""
    publisher = bus.EventPublisher(js, source="switchyard/executor")
    for n in range(160):
        await publisher.publish(
            _completed(f"t{n}", "openai/gpt-4o-mini"), subject=subjects.result_subject("acme", f"t{n}")
        )
    began = time.monotonic()
    deadline = began + 45.0
    while len(rows := await _rows(db_url)) < 160 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    took = time.monotonic() - began
    assert sorted(r.task_id for r in rows) == sorted(f"t{n}" for n in range(160))
    assert took < 20.0, f"160 results took {took:.1f} s to be stored"


@pytest.fixture
def default_policy_billing(
    nats_server: NatsServer, db_url: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Billing on the bundled policy: it lists the embedding models."""
    yield from _billing(nats_server, db_url, tmp_path, SWITCHYARD_POLICY_PATH=str(DEFAULT_POLICY))


async def test_an_embedding_result_becomes_one_entry_at_the_input_price(
    default_policy_billing: subprocess.Popen[bytes], js: nats.js.JetStreamContext, db_url: str
) -> None:
    raw = b"\x00\x00\x80\x3f" * 3072  # two vectors of 1,536 numbers (1.0)
    done = TaskCompleted(
        task_id="e1",
        tenant_id="acme",
        model="openai/text-embedding-3-small",
        provider="openai",
        tier="fast",
        content="",
        finish_reason="stop",
        usage=Usage(prompt_tokens=123_456, completion_tokens=0),
        attempts=1,
        latency_ms=20.0,
        completed_at=datetime.now(UTC),
        embedding=vectors.pack(raw, count=2, dimensions=1536),
    )
    publisher = bus.EventPublisher(js, source="switchyard/executor")
    for _ in range(2):  # redelivered: still one entry
        await publisher.publish(done, subject=subjects.result_subject("acme", "e1"), event_id="result-e1")
    await _usage_events(js, 1)
    await asyncio.sleep(1.0)  # a late duplicate would show now
    [event] = await _usage_events(js, 1)
    assert event.task_id == "e1" and event.priced and event.kind == "task"
    assert event.prompt_tokens == 123_456 and event.completion_tokens == 0
    assert event.cost_usd == pytest.approx(0.00246912)  # 123,456 x 0.00002 / 1K: the input price only
    [row] = await _rows(db_url)
    assert (row.model, row.prompt_tokens, row.completion_tokens) == (
        "openai/text-embedding-3-small",
        123_456,
        0,
    )
    assert row.cost_usd == Decimal("0.0024691200") and row.priced


@pytest.fixture
def repriced_billing(
    nats_server: NatsServer, sqlite_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Billing on a policy file of its own, checked every 0.2 s."""
    policy = write_price_sheet(tmp_path / "policy.yaml", version="before")
    for process in _billing(
        nats_server,
        sqlite_url,
        tmp_path,
        SWITCHYARD_POLICY_PATH=str(policy),
        SWITCHYARD_POLICY_CHECK_S="0.2",
    ):
        yield process, policy


async def test_a_price_changed_in_the_file_charges_the_next_task_without_a_restart(
    repriced_billing: tuple[subprocess.Popen[bytes], Path], js: nats.js.JetStreamContext, sqlite_url: str
) -> None:
    _, policy = repriced_billing
    publisher = bus.EventPublisher(js, source="switchyard/executor")
    await publisher.publish(
        _completed("t1", "openai/gpt-4o-mini"),
        subject=subjects.result_subject("acme", "t1"),
        event_id="result-1",
    )
    await _usage_events(js, 1)
    write_price_sheet(policy, version="after", prices={"openai/gpt-4o-mini": 0.0012})  # output x2
    await asyncio.sleep(0.6)  # three check periods
    await publisher.publish(
        _completed("t2", "openai/gpt-4o-mini"), subject=subjects.result_subject("acme", "t2")
    )
    _, copy = encode(
        _completed("t1", "openai/gpt-4o-mini"),
        source="switchyard/executor",
        event_id="result-1",
        tenant_id="acme",
    )
    await publisher.publish_raw(subjects.result_subject("acme", "t1"), copy, msg_id="t1-redelivered")

    events = {e.task_id: e for e in await _usage_events(js, 2)}
    # gpt-4o-mini: 2000 x 0.00015/1K + 1000 x 0.0006/1K, then 1000 x 0.0012/1K for the output
    assert (events["t1"].cost_usd, events["t1"].policy_version) == (pytest.approx(0.0009), "before")
    assert (events["t2"].cost_usd, events["t2"].policy_version) == (pytest.approx(0.0015), "after")
    await asyncio.sleep(0.5)  # the redelivered t1 is handled by now: still one charge, at its first price
    rows = await _rows(sqlite_url)
    assert [(r.task_id, r.cost_usd, r.policy_version) for r in rows] == [
        ("t1", Decimal("0.0009000000"), "before"),
        ("t2", Decimal("0.0015000000"), "after"),
    ]
    assert len(await _usage_events(js, 2)) == 2
