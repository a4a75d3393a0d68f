"""Billable provider calls (parallel losers, refused cascade steps) are charged once each, beside the
task's own entry; the delivered answer's call is not charged again."""

from __future__ import annotations

import asyncio
import subprocess

import nats
import pytest
from sqlalchemy import select

from switchyard.billing.models import CallUsageEntry, UsageEntry
from switchyard.common import bus, subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import encode
from switchyard.common.events import ProviderCallRecorded, Usage
from tests.integration.billing.test_billing_service import (  # noqa: F401 (fixtures)
    _completed,
    _usage_events,
    billing_service,
    js,
)

pytestmark = pytest.mark.integration


def _call(model: str, *, billable: bool, outcome: str = "ok", attempt: int = 1) -> ProviderCallRecorded:
    return ProviderCallRecorded(
        task_id="t9",
        tenant_id="acme",
        user_id="u1",
        attempt=attempt,
        provider=model.split("/")[0],
        model=model,
        outcome=outcome,
        latency_ms=10.0,
        usage=Usage(prompt_tokens=1000, completion_tokens=500),
        billable=billable,
        usage_estimated=outcome == "cancelled",
    )


async def test_billable_calls_are_charged_once_and_delivered_ones_not_twice(
    billing_service: subprocess.Popen[bytes],  # noqa: F811
    js: nats.js.JetStreamContext,  # noqa: F811
    db_url: str,
) -> None:
    publisher = bus.EventPublisher(js, source="switchyard/executor")
    loser = _call("openai/gpt-4o", billable=True, outcome="cancelled", attempt=1)
    _, body = encode(loser, source="switchyard/executor", event_id="call-loser", tenant_id="acme")
    for n in range(3):  # redelivered / re-published copies of one call event
        await publisher.publish_raw(subjects.PROVIDER_CALL, body, msg_id=f"loser-{n}")
    await publisher.publish(_call("openai/gpt-4o-mini", billable=False, attempt=2), event_id="call-winner")
    await publisher.publish(_call("openai/o3", billable=False, outcome="overloaded", attempt=3))
    await publisher.publish(
        _completed("t9", "openai/gpt-4o-mini"), subject=subjects.result_subject("acme", "t9")
    )

    events = await _usage_events(js, 2)
    await asyncio.sleep(1.0)
    events = await _usage_events(js, 2)
    assert sorted((e.kind, e.model) for e in events) == [
        ("call", "openai/gpt-4o"),
        ("task", "openai/gpt-4o-mini"),
    ]
    call = next(e for e in events if e.kind == "call")
    # gpt-4o: 1000 x 0.0025/1K + 500 x 0.01/1K
    assert call.cost_usd == pytest.approx(0.0075) and call.call_event_id == "call-loser"
    assert call.user_id == "u1"  # the task's user's spend, as the gateway counts it in their budget

    engine = create_engine(db_url)
    try:
        async with sessionmaker(engine)() as session:
            calls = list((await session.execute(select(CallUsageEntry))).scalars())
            tasks = list((await session.execute(select(UsageEntry))).scalars())
    finally:
        await engine.dispose()
    assert [(c.event_id, c.outcome, c.usage_estimated, c.user_id) for c in calls] == [
        ("call-loser", "cancelled", True, "u1")
    ]
    assert [t.task_id for t in tasks] == ["t9"]
