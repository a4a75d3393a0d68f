"""`python -m switchyard.audit` on a real nats-server: every event of a task's trail becomes one ledger entry,
duplicates and redeliveries included, with no prompt or answer text in the ledger."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import orjson
import pytest
from sqlalchemy import select

from switchyard.audit.db import migrations
from switchyard.audit.models import DigestKey, LedgerEntry
from switchyard.audit.verify import verify_ledger
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import encode
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    ProviderCallRecorded,
    RouteCandidate,
    RoutingDecision,
    TaskClassified,
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
    TaskTimedOut,
    Usage,
    UsageRecorded,
)
from switchyard.common.events.admin import AdminActionRecorded
from switchyard.common.events.gateway import AuthFailureRecorded
from tests.support.bus_services import BusService

pytestmark = pytest.mark.integration

PROMPT = "What is the capital of France? my secret plan is sk-live-abcdefghijklmnop"
ANSWER = "Paris, obviously"


def _audit(
    nats_server: NatsServer, db_url: str, tmp_path: Path, **settings: str
) -> Iterator[subprocess.Popen[bytes]]:
    asyncio.run(migrations().upgrade(db_url))
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_DATABASE_URL": db_url,
        "SWITCHYARD_VAR_DIR": str(tmp_path / "var"),
        "SWITCHYARD_AUDIT_SIGNING_KEY": "22" * 32,
        **settings,
    }
    yield from BusService("audit", env=env, log_path=tmp_path / "audit.log").running()


@pytest.fixture
def audit_service(nats_server: NatsServer, db_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    yield from _audit(nats_server, db_url, tmp_path)


@pytest.fixture
def slow_linger_audit(
    nats_server: NatsServer, db_url: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Few events in hand and a long linger: what a batch waits for shows in seconds."""
    yield from _audit(
        nats_server, db_url, tmp_path, SWITCHYARD_AUDIT_WORKERS="16", SWITCHYARD_AUDIT_LINGER_MS="3000"
    )


@pytest.fixture
async def publisher(nats_server: NatsServer) -> AsyncIterator[bus.EventPublisher]:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    yield bus.EventPublisher(js, source="switchyard/test")
    await nc.close()


def _trail(task_id: str) -> list[tuple[str, object]]:
    now = datetime.now(UTC)
    request = ChatRequest(messages=[ChatMessage(role="user", content=PROMPT)])
    task = TaskSubmitted(
        task_id=task_id,
        tenant_id="acme",
        user_id="u1",
        api_key_id="key1",
        request=request,
        origin="http",
        submitted_at=now,
    )
    classification = Classification(
        type="qa", confidence=0.9, complexity=0.2, urgency=0.5, model_version="m1", latency_ms=3.2
    )
    candidate = RouteCandidate(
        model="local/smollm2-135m-instruct",
        provider="local",
        upstream_model="SmolLM2-135M-Instruct",
        tier="local",
    )
    decision = RoutingDecision(
        tier="local",
        candidates=[candidate],
        policy_version="p1",
        reasons={"wanted_tier": "fast", "why": "complexity 0.20 -> fast", "rejected": []},
    )
    usage = Usage(prompt_tokens=12, completion_tokens=4)
    return [
        (subjects.TASK_SUBMITTED, task),
        (subjects.TASK_CLASSIFIED, TaskClassified(task=task, classification=classification)),
        (subjects.TASK_ROUTED, TaskRouted(task=task, classification=classification, decision=decision)),
        (
            subjects.PROVIDER_CALL,
            ProviderCallRecorded(
                task_id=task_id,
                tenant_id="acme",
                attempt=1,
                provider="local",
                model=candidate.model,
                outcome="ok",
                latency_ms=40.0,
                usage=usage,
            ),
        ),
        (
            subjects.result_subject("acme", task_id),
            TaskCompleted(
                task_id=task_id,
                tenant_id="acme",
                user_id="u1",
                api_key_id="key1",
                model=candidate.model,
                provider="local",
                tier="local",
                content=ANSWER,
                finish_reason="stop",
                usage=usage,
                attempts=1,
                latency_ms=45.0,
                completed_at=now,
            ),
        ),
        (
            subjects.USAGE_RECORDED,
            UsageRecorded(
                task_id=task_id,
                tenant_id="acme",
                user_id="u1",
                model=candidate.model,
                provider="local",
                tier="local",
                prompt_tokens=12,
                completion_tokens=4,
                cost_usd=0.0,
            ),
        ),
    ]


async def _entries(db_url: str, expected: int, timeout: float = 30.0) -> list[LedgerEntry]:
    engine = create_engine(db_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            async with sessionmaker(engine)() as session:
                rows = list((await session.execute(select(LedgerEntry).order_by(LedgerEntry.seq))).scalars())
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


async def test_every_event_becomes_one_entry(
    audit_service: subprocess.Popen[bytes], publisher: bus.EventPublisher, db_url: str
) -> None:
    published: list[str] = []
    for subject, payload in _trail("t1"):
        published.append(
            await publisher.publish(payload, subject=subject, tenant_id="acme", event_subject="t1")
        )  # type: ignore[arg-type]
    failed = TaskFailed(
        task_id="t2",
        tenant_id="acme",
        error_code="provider_overloaded",
        error_message="upstream said: bad key sk-abcdefghijklmnopqrst",
        failed_at=datetime.now(UTC),
    )
    published.append(await publisher.publish(failed, subject=subjects.result_subject("acme", "t2")))
    published.append(await publisher.publish(TaskTimedOut(task_id="t3", tenant_id="acme", waited_ms=3000.0)))

    rows = await _entries(db_url, len(published))
    assert sorted(r.event_id for r in rows) == sorted(published)
    by_action = {r.action: r for r in rows}
    assert set(by_action) == {
        "task.submit",
        "task.classify",
        "task.route",
        "provider.call",
        "task.complete",
        "billing.usage",
        "task.fail",
        "task.timeout",
    }
    submit = by_action["task.submit"]
    assert (submit.actor, submit.resource, submit.tenant_id) == ("api_key:key1", "task/t1", "acme")
    # the prompt by its keyed digest: a reader of the ledger cannot confirm a guess of it
    assert '"prompt_hmac_sha256":' in submit.details and '"prompt_sha256"' not in submit.details
    assert '"candidates":["local/smollm2-135m-instruct"]' in by_action["task.route"].details
    assert by_action["task.route"].actor == "service:test"
    assert by_action["task.fail"].outcome == "failure"
    everything = " ".join(f"{r.details} {r.actor} {r.resource}" for r in rows)
    assert "capital of France" not in everything and ANSWER not in everything
    assert "sk-abcdefghijklmnopqrst" not in everything and "sk-live" not in everything
    assert hashlib.sha256(PROMPT.encode()).hexdigest() not in everything

    engine = create_engine(db_url)
    try:
        report = await verify_ledger(sessionmaker(engine))
    finally:
        await engine.dispose()
    assert report.ok and report.entries == len(published)


async def test_duplicate_publishes_make_one_entry(
    audit_service: subprocess.Popen[bytes],
    publisher: bus.EventPublisher,
    db_url: str,
    nats_server: NatsServer,
) -> None:
    """The same CloudEvent published under different Nats-Msg-Ids passes JetStream's de-duplication; the
    ledger still records it once. An invalid event is dead-lettered, not recorded, and blocks nothing."""
    _, body = encode(
        TaskTimedOut(task_id="t9", tenant_id="acme", waited_ms=1.0), source="test", event_id="dup-1"
    )
    for n in range(5):
        await publisher.publish_raw(subjects.TASK_TIMED_OUT, body, msg_id=f"copy-{n}")
    await publisher.publish_raw(subjects.TASK_TIMED_OUT, b"{not json", msg_id="garbage")
    await publisher.publish(TaskTimedOut(task_id="t10", tenant_id="acme", waited_ms=1.0), event_id="after")

    rows = await _entries(db_url, 2)
    await asyncio.sleep(1.0)  # any late duplicate would land now
    rows = await _entries(db_url, 2)
    assert [(r.seq, r.event_id) for r in rows] == [(1, "dup-1"), (2, "after")]
    nc = await nats.connect(nats_server.url)
    try:
        dead = await nc.jetstream().stream_info(subjects.STREAM_DLQ)
    finally:
        await nc.close()
    assert dead.state.messages == 1


async def test_two_organisations_events_of_one_id_each_make_their_entry(
    audit_service: subprocess.Popen[bytes], publisher: bus.EventPublisher, db_url: str
) -> None:
    """Other systems choose CloudEvent ids: globex publishing first under the id acme's event has must not
    keep acme's out of the ledger. Each organisation's copies (Nats-Msg-Ids of their own, past JetStream's
    de-duplication) and a tenant-less event's copies are still recorded once."""
    copies = []
    for tenant in ("globex", "acme"):
        _, body = encode(
            TaskTimedOut(task_id="job-1", tenant_id=tenant, waited_ms=1.0), source="test", event_id="job-1"
        )
        copies.append(body)
    refused = AuthFailureRecorded(
        reason="invalid_api_key",
        credential="api_key",
        client="127.0.0.1",
        endpoint="/v1/tasks",
        at=datetime.now(UTC),
    )
    _, system = encode(refused, source="test", event_id="sys-1")
    for n in range(3):
        for k, body in enumerate(copies):
            await publisher.publish_raw(subjects.TASK_TIMED_OUT, body, msg_id=f"copy-{k}-{n}")
        await publisher.publish_raw(subjects.SECURITY_AUTH_FAILURE, system, msg_id=f"sys-{n}")
    await publisher.publish(TaskTimedOut(task_id="t10", tenant_id="acme", waited_ms=1.0), event_id="after")

    rows = await _entries(db_url, 4)
    await asyncio.sleep(1.0)  # any late copy would land now
    rows = await _entries(db_url, 4)
    assert sorted((r.event_id, r.tenant_id) for r in rows) == [
        ("after", "acme"),
        ("job-1", "acme"),
        ("job-1", "globex"),
        ("sys-1", "-"),
    ]


async def test_a_batch_holding_every_event_in_hand_is_written_without_lingering(
    slow_linger_audit: subprocess.Popen[bytes], publisher: bus.EventPublisher, db_url: str
) -> None:
    """The consumer hands the writer at most `audit_workers` events; no more can come until they are
    written. A writer that lingered on for `audit_max_batch` (500) wrote 16 events per 3 s linger here,
    so 160 events took ~30 s: the ledger's pace under load was workers per linger (64 per 100 ms by
    default, ~550 events a second, below what the stack publishes at ~200 requests a second)."""
    published = []
    for n in range(160):
        event = TaskTimedOut(task_id=f"t{n}", tenant_id="acme", waited_ms=1.0)
        published.append(await publisher.publish(event))
    began = time.monotonic()
    rows = await _entries(db_url, len(published), timeout=45.0)
    took = time.monotonic() - began
    assert sorted(r.event_id for r in rows) == sorted(published)
    # one gathering pause (3 s) before the first full batch, then batches of 16 back to back (room left
    # for a loaded machine)
    assert took < 20.0, f"160 events took {took:.1f} s to reach the ledger"
    batches: dict[object, int] = {}
    for r in rows:
        batches[r.recorded_at] = batches.get(r.recorded_at, 0) + 1
    assert max(batches.values()) <= 16  # never more than the consumer had in hand


async def test_prompts_are_digested_with_the_tenants_key_and_erasure_shreds_it(
    audit_service: subprocess.Popen[bytes],
    publisher: bus.EventPublisher,
    db_url: str,
    nats_server: NatsServer,
) -> None:
    """The service keys each tenant's digests; the auditor's check over the bus confirms a prompt against
    the tenant's own entry; `admin.organization.erased` deletes the key: the check is refused from then on,
    later entries of the tenant carry no digest, and the ledger verifies unchanged."""
    for tenant in ("acme", "globex"):
        submitted = _trail("t1")[0][1]
        task = submitted.model_copy(update={"tenant_id": tenant, "task_id": f"{tenant}-1"})  # type: ignore[attr-defined]
        await publisher.publish(task, tenant_id=tenant)
    rows = await _entries(db_url, 2)
    digest = {r.tenant_id: orjson.loads(r.details)["prompt_hmac_sha256"] for r in rows}
    assert digest["acme"] != digest["globex"]  # the same prompt, two keys: nothing links them
    acme_seq = next(r.seq for r in rows if r.tenant_id == "acme")

    nc = await nats.connect(nats_server.url)

    async def ask(**body: object) -> dict[str, object]:
        reply = await nc.request(subjects.LEDGER_RPC_DIGEST, orjson.dumps(body), timeout=5)
        return orjson.loads(reply.data)  # type: ignore[no-any-return]

    try:
        ok = await ask(tenant_id="acme", text=PROMPT, seq=acme_seq)
        assert (ok["matches"], ok["digest"]) == (True, digest["acme"]), ok
        assert (await ask(tenant_id="acme", text="fire Alice", seq=acme_seq))["matches"] is False
        assert (await ask(tenant_id="globex", text=PROMPT, seq=acme_seq))["error"]["code"] == "forbidden"  # type: ignore[index]
        assert (await ask(tenant_id="acme", text=PROMPT, seq=True))["error"]["code"] == "invalid_request"  # type: ignore[index]
        erased = AdminActionRecorded(
            action="organization.erased",
            tenant_id="acme",
            target_type="organization",
            target_id="acme",
            at=datetime.now(UTC),
        )
        await publisher.publish(erased, tenant_id="acme")
        await _entries(db_url, 3)
        deadline = time.monotonic() + 10
        while "error" not in (gone := await ask(tenant_id="acme", text=PROMPT, seq=acme_seq)):
            assert time.monotonic() < deadline, gone
            await asyncio.sleep(0.1)
        assert gone["error"]["code"] == "key_erased"  # type: ignore[index]
        assert (await ask(tenant_id="globex", text=PROMPT, seq=3 - acme_seq))["matches"] is True
    finally:
        await nc.close()
    late = _trail("t1")[0][1].model_copy(update={"task_id": "acme-2"})  # type: ignore[attr-defined]
    await publisher.publish(late, tenant_id="acme")
    rows = await _entries(db_url, 4)
    assert "prompt_hmac_sha256" not in orjson.loads(rows[3].details) and rows[3].tenant_id == "acme"
    engine = create_engine(db_url)
    try:
        async with sessionmaker(engine)() as session:
            keys = {k.tenant_id: k.secret for k in (await session.execute(select(DigestKey))).scalars()}
        assert keys["acme"] is None and keys["globex"] is not None
        report = await verify_ledger(sessionmaker(engine))
    finally:
        await engine.dispose()
    assert report.ok and report.entries == 4
