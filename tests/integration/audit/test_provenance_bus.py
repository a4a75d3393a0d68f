"""The ledger records where each event came from as the server established it, not as its payload says: on a
real nats-server with `switchyard up`'s permissions, an integrator scoped to acme submits a task naming
another user's key, and the executor sends a provider call whose envelope claims the gateway; the audit
service (its own NATS user) records each with the subject it arrived on and who may publish there, inside
the entry's hash, and the SIEM export carries it. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from switchyard.audit.export.formats import Encoder
from switchyard.audit.export.record import read_after
from switchyard.audit.models import LedgerEntry
from switchyard.audit.verify import verify_ledger
from switchyard.cli.bus_permissions import Integrator
from switchyard.common import bus, subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import encode
from switchyard.common.events import ChatMessage, ChatRequest, ProviderCallRecorded, TaskSubmitted
from tests.integration.audit.test_feedback_checked import running_audit
from tests.support.guarded_bus import GuardedBus, scoped_guarded_bus

pytestmark = pytest.mark.integration

PARTNER = Integrator("partner", ("acme",))
TOKEN = subjects.tenant_token("acme")


@pytest.fixture
def scoped_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedBus]:
    yield from scoped_guarded_bus(tmp_path, monkeypatch, PARTNER)


@pytest.fixture
def audit_log(scoped_bus: GuardedBus, db_url: str, tmp_path: Path) -> Iterator[Path]:
    yield from running_audit(scoped_bus, db_url, tmp_path)


async def _entries(db_url: str, expected: int, timeout: float = 30.0) -> dict[str, tuple[str, Any]]:
    """action -> (actor, provenance) once the ledger holds `expected` entries."""
    engine = create_engine(db_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            async with sessionmaker(engine)() as session:
                query = select(LedgerEntry.action, LedgerEntry.actor, LedgerEntry.provenance)
                rows = (await session.execute(query.order_by(LedgerEntry.seq))).all()
            if len(rows) >= expected or time.monotonic() > deadline:
                return {a: (actor, None if p is None else orjson.loads(p)) for a, actor, p in rows}
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


def _task() -> TaskSubmitted:
    return TaskSubmitted(
        task_id="t-partner-1",
        tenant_id="acme",
        user_id="usr_alice",  # not the partner's to claim: nothing on the bus can check it
        api_key_id="key_of_alice",
        request=ChatRequest(messages=[ChatMessage(role="user", content="hello")]),
        submitted_at=datetime.now(UTC),
    )


def _call() -> ProviderCallRecorded:
    return ProviderCallRecorded(
        task_id="t-partner-1",
        tenant_id="acme",
        attempt=1,
        provider="local",
        model="m",
        outcome="ok",
        latency_ms=3.0,
    )


async def test_each_entry_says_who_could_have_published_it_whatever_its_payload_claims(
    scoped_bus: GuardedBus, audit_log: Path, db_url: str
) -> None:
    partner, executor = await scoped_bus.connect(PARTNER.user), await scoped_bus.connect("executor")
    try:
        scoped_subject = subjects.scoped(subjects.TASK_SUBMITTED, "acme")
        _, body = encode(_task(), source="switchyard/gateway", tenant_id="acme", subject="t-partner-1")
        await partner.jetstream().publish(scoped_subject, body, headers={"Nats-Msg-Id": "partner-task-1"})
        # the executor's own event, its envelope claiming the gateway sent it
        claims = bus.EventPublisher(executor.jetstream(), source="switchyard/gateway")
        await claims.publish(_call())
    finally:
        for nc in (partner, executor):
            await nc.close()

    entries = await _entries(db_url, 2)
    assert entries["task.submit"] == (
        "api_key:key_of_alice",  # what the payload claims, as before
        {"subject": scoped_subject, "by": [f"integrator:{TOKEN}"]},  # what the server established
    )
    assert entries["provider.call"] == (
        "service:gateway",
        {"subject": subjects.PROVIDER_CALL, "by": ["service:executor"]},
    )
    engine = create_engine(db_url)
    try:
        sessions = sessionmaker(engine)
        report = await verify_ledger(sessions)
        assert report.ok and report.entries == 2, report
        exported = [
            orjson.loads(Encoder("ocsf", "line").encode(r))
            for r in await read_after(sessions, after=0, limit=10)
        ]
    finally:
        await engine.dispose()
    sent = {e["api"]["operation"]: e for e in exported}
    assert sent["task.submit"]["unmapped"]["provenance"]["by"] == [f"integrator:{TOKEN}"]
    assert sent["task.submit"]["src_endpoint"]["svc_name"] == scoped_subject
    assert sent["provider.call"]["unmapped"]["provenance"]["by"] == ["service:executor"]
    scoped_bus.assert_clean(audit_log)
