"""The outcome recorder (`classifier-outcomes`, started by `switchyard up` when organisations opted in)
under the embedded run's least-privilege NATS permissions (`cli/bus_permissions.py`): a real nats-server
with the generated users, the recorder as a process logged in as `classifier`, its two durable consumers
made by it, a classified task of an opted-in organisation stored, then that organisation's erasure.
Nothing on the way may be refused: the server's log and the recorder's own say no permissions violation."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from sqlalchemy import func, select

from switchyard.classifier.outcomes.models import OutcomeFeatures
from switchyard.common import bus
from switchyard.common.db import create_engine
from switchyard.common.events import (
    AdminActionRecorded,
    ChatRequest,
    Classification,
    TaskClassified,
    TaskSubmitted,
)
from tests.support.bus_services import BusService
from tests.support.guarded_bus import GuardedBus

pytestmark = pytest.mark.integration

TENANT = "acme"


def _classified(task_id: str) -> TaskClassified:
    task = TaskSubmitted(
        task_id=task_id,
        tenant_id=TENANT,
        request=ChatRequest(
            messages=[{"role": "user", "content": "Translate into French: my aunt is here."}]
        ),
        submitted_at=datetime.now(UTC),
    )
    c = Classification(
        type="writing",
        confidence=0.6,
        complexity=0.3,
        urgency=0.4,
        model_version="heads-test",
        latency_ms=3.0,
    )  # type: ignore[arg-type]
    return TaskClassified(task=task, classification=c)


async def _rows(sqlite_url: str, want: int, timeout: float = 60.0) -> None:
    engine = create_engine(sqlite_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            async with engine.connect() as conn:
                got = (await conn.execute(select(func.count()).select_from(OutcomeFeatures))).scalar_one()
            if got == want:
                return
            assert time.monotonic() < deadline, f"{got} stored feature rows, not {want}"
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


async def test_the_outcome_recorder_stores_and_forgets_under_its_permissions(
    guarded: GuardedBus, sqlite_url: str, tmp_path: Path
) -> None:
    env = {
        **guarded.env("classifier-outcomes"),
        "SWITCHYARD_DATABASE_URL": sqlite_url,
        "SWITCHYARD_CLASSIFIER_OUTCOME_TENANTS": f'["{TENANT}"]',
    }
    log = tmp_path / "recorder.log"
    recorder = BusService(
        "classifier-outcomes",
        module="switchyard.classifier.outcomes",
        env=env,
        log_path=log,
        ping_url=guarded.operator_url,
    )
    await recorder.start(timeout=90)
    operator = await nats.connect(guarded.operator_url)
    try:
        publisher = bus.EventPublisher(operator.jetstream(), source="test")
        await publisher.publish(_classified("t1"), tenant_id=TENANT)
        await _rows(sqlite_url, 1)
        erased = AdminActionRecorded(
            action="organization.erased", tenant_id=TENANT, target_type="organization", target_id=TENANT,
            at=datetime.now(UTC),
        )  # fmt: skip
        await publisher.publish(erased, tenant_id=TENANT, event_subject=TENANT)
        await _rows(sqlite_url, 0)
    finally:
        await operator.close()
        recorder.stop()
    guarded.assert_clean(log)
